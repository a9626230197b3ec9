fn main() {
    eprintln!("gingham-agent: not built yet (see README)");
    std::process::exit(1);
}
