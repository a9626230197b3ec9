fn main() {
    eprintln!("gingham-lab: not built yet (see README)");
    std::process::exit(1);
}
