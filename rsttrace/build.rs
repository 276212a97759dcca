//! Builds the eBPF programs (crate `rsttrace-ebpf`) for the bpf target and
//! leaves two objects in OUT_DIR for `include_bytes_aligned!`:
//! `rsttrace-ringbuf.o` (BPF ring buffer, Linux >= 5.8) and `rsttrace-perf.o`
//! (perf buffers, older kernels).
//!
//! Toolchain: `RSTTRACE_EBPF_TOOLCHAIN` names a rustup toolchain (default
//! `debian`: Debian's rustc-web linked by scripts/bootstrap.sh, whose
//! prebuilt bpf `core` needs no build-std).  With a nightly that has
//! rust-src (`RSTTRACE_EBPF_TOOLCHAIN=nightly`), aya-build adds
//! `-Z build-std=core` itself.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (for `cargo check`/`clippy` on a
//! machine without the toolchain) and embeds empty objects, which fail
//! clearly at run time.

use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, Result};
use aya_build::{Package, Toolchain};

const VARIANTS: [(&str, &str); 2] = [
    ("ringbuf", "rsttrace-ringbuf.o"),
    ("perf", "rsttrace-perf.o"),
];

fn main() -> Result<()> {
    println!("cargo:rerun-if-env-changed=RSTTRACE_EBPF_TOOLCHAIN");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        for (_, object) in VARIANTS {
            let path = out_dir.join(object);
            if !path.exists() {
                fs::write(&path, [])?;
            }
        }
        return Ok(());
    }

    let toolchain = env::var("RSTTRACE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "debian".to_string());
    // aya-ebpf needs `asm_experimental_arch` on the bpf target; a stable
    // rustc allows it for that one crate with RUSTC_BOOTSTRAP=<crate>, which
    // (unlike `1`) does not make aya-build ask for build-std.
    if env::var_os("RUSTC_BOOTSTRAP").is_none() {
        env::set_var("RUSTC_BOOTSTRAP", "aya_ebpf");
    }
    // aya-build relays the child cargo's stderr as warnings; keep only
    // what matters (errors still print).
    env::set_var("CARGO_TERM_QUIET", "true");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no manifest dir")?);
    let ebpf_dir = manifest.join("../rsttrace-ebpf");
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    // aya-build watches the eBPF crate's directory only; the programs are
    // also built from rsttrace-common's record and config layouts, which
    // must never be stale in the object.
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("../rsttrace-common").display()
    );

    for (feature, object) in VARIANTS {
        aya_build::build_ebpf(
            [Package {
                name: "rsttrace-ebpf",
                root_dir: ebpf_dir,
                no_default_features: true,
                features: &[feature],
            }],
            Toolchain::Custom(&toolchain),
        )
        .with_context(|| {
            format!(
                "building the eBPF programs ({feature}) with rustup toolchain `{toolchain}` failed; \
                 run scripts/bootstrap.sh, or set RSTTRACE_EBPF_TOOLCHAIN to a nightly with rust-src"
            )
        })?;
        // aya-build names the object after the bin target; keep one per variant.
        fs::rename(out_dir.join("rsttrace"), out_dir.join(object))
            .with_context(|| format!("moving the {feature} object into place"))?;
    }
    Ok(())
}
