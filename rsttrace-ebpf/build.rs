use which::which;

/// Building the eBPF object needs the `bpf-linker` binary, which cargo cannot
/// express as a dependency: rebuild when the linker on PATH changes.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => {
            println!("cargo:warning=bpf-linker not found on PATH ({err}); run scripts/bootstrap.sh")
        }
    }
}
