fn main() {
    eprintln!("gingham-cni: not built yet (see README)");
    std::process::exit(1);
}
