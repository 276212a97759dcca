//! What the eBPF programs and the decoder need to know about the running
//! kernel, read from BTF and tracefs at start-up: struct member offsets,
//! tracepoint signatures, and the names behind numbers (reset reasons, TCP
//! states, socket flag bits).  Nothing here is compiled in for one kernel.

use rsttrace_common::config::Config;

use super::{
    btf::Btf,
    hooks::{self, Hooks},
    names::KernelNames,
    tracefs::EventFormat,
    LayoutError,
};

mod enums;
mod members;
#[cfg(test)]
mod tests;

use self::{
    enums::names,
    members::{locate, MEMBERS},
};

/// Where `recursion_misses` sits in uapi `struct bpf_prog_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgInfoLayout {
    pub recursion_misses: u32,
    pub size: u32,
}

pub struct KernelFacts {
    pub config: Config,
    pub prog_info: Option<ProgInfoLayout>,
    pub names: KernelNames,
    pub hooks: Hooks,
    /// Features left out on this kernel, one line each, for the log.
    pub degraded: Vec<String>,
}

/// Resolves struct offsets, names and hooks from BTF, plus the accept
/// syscall record layout and the reason names from tracefs when BTF lacks
/// them.
pub(crate) fn resolve(
    btf: &Btf,
    accept_exit: Option<&EventFormat>,
    send_reset: Option<&EventFormat>,
) -> Result<KernelFacts, LayoutError> {
    let mut config = Config::empty();
    let mut degraded = vec![];
    let mut missing_optional = vec![];
    for member in MEMBERS {
        match locate(btf, member) {
            Ok(off) => *(member.slot)(&mut config.offsets) = off,
            Err(why) if member.required => return Err(LayoutError::MissingMember(why)),
            Err(why) => missing_optional.push(why),
        }
    }
    let names = names(btf, &mut config, send_reset)?;
    let hooks = hooks::detect(btf, &mut config, accept_exit, &mut degraded)?;
    if !missing_optional.is_empty() {
        degraded.push(format!(
            "not in this kernel's BTF (fields left empty): {}",
            missing_optional.join(", ")
        ));
    }
    let prog_info = btf
        .member_path("bpf_prog_info", "recursion_misses")
        .and_then(|l| l.byte_offset())
        .zip(
            btf.struct_id("bpf_prog_info")
                .and_then(|id| btf.size_of(id)),
        )
        .map(|(recursion_misses, size)| ProgInfoLayout {
            recursion_misses,
            size,
        });
    Ok(KernelFacts {
        config,
        prog_info,
        names,
        hooks,
        degraded,
    })
}
