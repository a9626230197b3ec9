//! Per-test scratch directory for configs, sockets, pid files and logs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A temporary directory that is removed when the test passes and kept when it panics, so the
/// daemon logs and configs of a failed run can still be read.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
}

impl TestDir {
    /// Creates `/tmp/gingham-<name>-XXXX`.
    pub fn new(name: &str) -> Result<TestDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("gingham-{name}-"))
            .tempdir()
            .context("creating test directory")?;
        // Readable by others: FRR's zebra runs as user `frr` and must reach its directory.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        Ok(TestDir { dir: Some(dir) })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("dir is only taken in drop").path()
    }

    /// A subdirectory (created if missing), one per daemon instance.
    pub fn sub(&self, name: &str) -> Result<PathBuf> {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("test failed: logs and configs kept in {}", kept.display());
            }
        }
    }
}

/// The last `lines` lines of a text file, or a note saying why it could not be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
