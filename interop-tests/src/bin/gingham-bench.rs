fn main() {
    eprintln!("gingham-bench: not built yet (see README)");
    std::process::exit(1);
}
