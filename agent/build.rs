//! The release build of `gingham-agent` on x86-64 Linux links the code an agent runs into one
//! stretch of the binary, in the order `hot-symbols.txt` gives (`scripts/hot-symbols` writes it
//! from a lab run). The kernel maps a program's code 64 KB at a time around each page it
//! touches, so code scattered over the 10 MB of text kept 5.5 MB of it resident in every agent;
//! laid out together it is under 2 MB. Relative relocations are packed too (DT_RELR, glibc
//! 2.36 and newer): 480 KB of them were read, and kept resident, at every start.
//!
//! Both options are LLD's, Rust's default linker for this target since 1.90; with another
//! linker, set `GINGHAM_NO_CODE_LAYOUT=1` to build without them. A name the file lists that the
//! binary lacks (another toolchain, changed code) is skipped without a word: the binary is the
//! same, only its layout is less tight. The names are those of a workspace build
//! (`cargo build --release --bins` at the root, as the lab, the benchmarks and the image build
//! it): `-p agent` alone resolves some dependencies' features differently, and with them the
//! names. `gingham-bench mesh` says how many of the names the binary it measures still has.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=hot-symbols.txt");
    println!("cargo::rerun-if-env-changed=GINGHAM_NO_CODE_LAYOUT");
    if std::env::var_os("GINGHAM_NO_CODE_LAYOUT").is_some_and(|v| v != "0") {
        return;
    }
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !release || target != "x86_64-unknown-linux-gnu" {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for arg in [
        format!("-Wl,--symbol-ordering-file={dir}/hot-symbols.txt"),
        "-Wl,--no-warn-symbol-ordering".to_string(),
        "-Wl,-z,pack-relative-relocs".to_string(),
    ] {
        println!("cargo::rustc-link-arg-bin=gingham-agent={arg}");
    }
}
