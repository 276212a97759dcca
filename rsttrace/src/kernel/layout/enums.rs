//! The names behind numbers, read from BTF enums (or tracefs): TCP states,
//! socket flag bits, the `sk_shutdown` bits and reset reasons.

use rsttrace_common::config::Config;

use crate::kernel::LayoutError;
use crate::kernel::{
    btf::Btf,
    names::{BitSpec, KernelNames, Reason, TcpState},
    tracefs::EventFormat,
};

/// TCP states, socket flag bits, `sk_shutdown` and reset reason names.
pub(super) fn names(
    btf: &Btf,
    config: &mut Config,
    send_reset: Option<&EventFormat>,
) -> Result<KernelNames, LayoutError> {
    let mut names = KernelNames::default();
    // sk_shutdown: a u8 since 5.x, a 2-bit field before.
    let shutdown = btf.member_path("sock", "sk_shutdown").ok_or_else(|| {
        LayoutError::MissingMember("no member `sk_shutdown` in struct sock".into())
    })?;
    config.offsets.sk_shutdown_byte = shutdown.bit_offset / 8;
    let bits = if shutdown.bitfield_size == 0 {
        8
    } else {
        shutdown.bitfield_size.min(8)
    };
    names.sk_shutdown = Some(BitSpec {
        shift: (shutdown.bit_offset % 8) as u8,
        mask: ((1u16 << bits) - 1) as u8,
    });
    // sk_protocol: only a plain u16 can be read directly.
    if let Some(loc) = btf.member_path("sock", "sk_protocol") {
        if let (Some(off), Some(2)) = (loc.byte_offset(), btf.size_of(loc.type_id)) {
            config.offsets.sk_protocol = off;
        }
    }
    states(btf, config, &mut names)?;
    names.bytes_sent_known = config.offsets.tcp_bytes_sent != rsttrace_common::config::ABSENT;
    if let Some(flags) = btf.enum_values("sock_flags") {
        for (name, value) in flags {
            match name {
                "SOCK_DEAD" => names.sock_dead_bit = Some(value as u32),
                "SOCK_LINGER" => names.sock_linger_bit = Some(value as u32),
                "SOCK_DONE" => names.sock_done_bit = Some(value as u32),
                _ => {}
            }
        }
    }
    // Reset reason names: BTF enum, else the tracepoint's print format.
    if let Some(values) = btf.enum_values("sk_rst_reason") {
        for (name, value) in values {
            let short = name.strip_prefix("SK_RST_REASON_").unwrap_or(name);
            names.add_reason(value as u32, short);
        }
    } else if let Some(fmt) = send_reset {
        for (value, name) in fmt.symbols("reason") {
            names.add_reason(value as u32, &name);
        }
    }
    if let Some(v) = names.reason_value(Reason::NotSpecified) {
        config.reason_not_specified = v;
    }
    Ok(names)
}

/// TCP states (include/net/tcp_states.h), by name.
fn states(btf: &Btf, config: &mut Config, names: &mut KernelNames) -> Result<(), LayoutError> {
    let states = btf
        .enum_containing("TCP_ESTABLISHED")
        .ok_or_else(|| LayoutError::MissingEnumerator("TCP_ESTABLISHED".into()))?;
    for (name, value) in states {
        if let (Some(short), Ok(v)) = (name.strip_prefix("TCP_"), u8::try_from(value)) {
            names.add_state(v, short);
        }
    }
    let state = |s: TcpState| -> Result<u8, LayoutError> {
        names
            .state_value(s)
            .ok_or_else(|| LayoutError::MissingEnumerator(format!("TCP_{}", s.name())))
    };
    config.tcp_listen = state(TcpState::Listen)?;
    config.tcp_syn_sent = state(TcpState::SynSent)?;
    config.tcp_syn_recv = state(TcpState::SynRecv)?;
    config.tcp_time_wait = state(TcpState::TimeWait)?;
    config.tcp_new_syn_recv = state(TcpState::NewSynRecv)?;
    config.tcp_fin_wait1 = state(TcpState::FinWait1)?;
    config.tcp_established = state(TcpState::Established)?;
    config.tcp_last_ack = state(TcpState::LastAck)?;
    config.tcp_fin_wait2 = state(TcpState::FinWait2)?;
    config.tcp_closing = state(TcpState::Closing)?;
    config.tcp_close = state(TcpState::Close)?;
    Ok(())
}
