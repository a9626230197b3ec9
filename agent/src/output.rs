//! Writing to stdout for command-line tools: a closed pipe (`routectl show | head`) ends the
//! program quietly, as it does for `ip` or `cat`, instead of a panic with a backtrace.

use std::io::Write;

/// Writes `text` to stdout and flushes. On a broken pipe the reader is gone and nothing more
/// can be said: exit 0 at once. Other write errors are reported on stderr, exit 1.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`print`].
#[macro_export]
macro_rules! say {
    () => { $crate::output::print("\n") };
    ($($arg:tt)*) => { $crate::output::print(&format!("{}\n", format_args!($($arg)*))) };
}
