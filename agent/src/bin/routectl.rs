fn main() {
    eprintln!("routectl: not built yet (see README)");
    std::process::exit(1);
}
