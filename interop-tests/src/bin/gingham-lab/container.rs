//! Just enough of a container runtime for `up --from-manifest`: a process in a node's network
//! namespace that sees the machine's files through a copy-on-write layer, with the pod's volumes
//! and the image's binaries mounted where the manifest says.
//!
//! The launcher (`gingham-lab container-run <spec>`, run by `ip netns exec <node>`) makes a
//! mount namespace of its own, mounts an overlay whose lower layer is `/` and whose upper layer
//! is under the lab directory (so `mkdir /host/opt/cni/bin` or a write to `/etc` touches nothing
//! of the machine), binds `/proc`, `/dev`, `/sys` and each bind of the spec into it, chroots
//! there and executes the command. The mounts live and die with the process.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bind {
    pub source: PathBuf,
    /// Inside the container.
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Holds the overlay's upper and work directories and its mount point.
    pub state_dir: PathBuf,
    pub binds: Vec<Bind>,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
}

impl ContainerSpec {
    /// Writes the spec where `container-run` reads it.
    pub fn write(&self) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.state_dir)?;
        let path = self.state_dir.join("spec.json");
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }
}

fn bind(source: &Path, target: &Path, read_only: bool) -> Result<()> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind {} on {}", source.display(), target.display()))?;
    if read_only {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .with_context(|| format!("read-only {}", target.display()))?;
    }
    Ok(())
}

/// `path` as the container will see it, on the machine: under `root`, with symlinks on the way
/// followed inside `root` (the image's `/var/run` is a link to `/run`: followed from outside the
/// chroot it would lead to the machine's own `/run`).
fn in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    use std::path::Component;
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .rev()
        .collect();
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&c);
        match std::fs::symlink_metadata(root.join(&next)) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    bail!("too many symbolic links in {}", path.display());
                }
                let link = std::fs::read_link(root.join(&next))?;
                if link.is_absolute() {
                    at = PathBuf::new();
                }
                todo.extend(
                    link.components()
                        .filter_map(|c| match c {
                            Component::Normal(n) => Some(n.to_os_string()),
                            Component::ParentDir => Some("..".into()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev(),
                );
            }
            _ => at = next,
        }
    }
    Ok(root.join(at))
}

/// A mount point for `source` at `target`: a directory, or an empty file for a file.
fn mount_point(source: &Path, target: &Path) -> Result<()> {
    if source.is_dir() {
        std::fs::create_dir_all(target)?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if !target.exists() {
            std::fs::write(target, b"")?;
        }
    }
    Ok(())
}

/// `container-run`: sets the container up and becomes its command. Returns only on failure.
pub fn run(spec_path: &Path) -> Result<std::convert::Infallible> {
    let spec: ContainerSpec = serde_json::from_slice(
        &std::fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?,
    )?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).context("unshare(CLONE_NEWNS)")?;
    // Nothing mounted here may reach the machine's mount namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;
    let (upper, work, root) = (
        spec.state_dir.join("upper"),
        spec.state_dir.join("work"),
        spec.state_dir.join("rootfs"),
    );
    // A fresh writable layer at every start, as a container gets.
    for d in [&upper, &work] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    std::fs::create_dir_all(&root)?;
    let opts = format!(
        "lowerdir=/,upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .context("mounting the overlay of /")?;
    for sys in ["/proc", "/dev", "/sys"] {
        bind(Path::new(sys), &root.join(&sys[1..]), false)?;
    }
    for b in &spec.binds {
        let target = in_root(&root, &b.target)?;
        mount_point(&b.source, &target)?;
        bind(&b.source, &target, b.read_only)?;
    }
    nix::unistd::chroot(&root).context("chroot")?;
    nix::unistd::chdir("/").context("chdir /")?;
    let program = resolve(&spec.argv, &spec.env)?;
    let cstr = |s: &str| CString::new(s).map_err(|_| anyhow!("a NUL byte in {s:?}"));
    let argv = spec
        .argv
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>>>()?;
    let env = spec
        .env
        .iter()
        .map(|(k, v)| cstr(&format!("{k}={v}")))
        .collect::<Result<Vec<_>>>()?;
    nix::unistd::execve(&cstr(&program)?, &argv, &env)
        .with_context(|| format!("executing {program}"))
}

/// The program of `argv` as the container's PATH finds it (inside the new root).
fn resolve(argv: &[String], env: &[(String, String)]) -> Result<String> {
    let Some(first) = argv.first() else {
        bail!("no command");
    };
    if first.contains('/') {
        return Ok(first.clone());
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(crate::manifest::IMAGE_PATH);
    path.split(':')
        .map(|d| Path::new(d).join(first))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("{first} is not in the container's PATH ({path})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_are_followed_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("run")).unwrap();
        std::fs::create_dir_all(r.join("var/lib")).unwrap();
        std::os::unix::fs::symlink("/run", r.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../run", r.join("var/lib/rel")).unwrap();
        assert_eq!(
            in_root(r, Path::new("/var/run/gingham/agent.sock")).unwrap(),
            r.join("run/gingham/agent.sock")
        );
        // var/lib/rel → ../run → var/run → /run.
        assert_eq!(
            in_root(r, Path::new("/var/lib/rel/x")).unwrap(),
            r.join("run/x")
        );
        assert_eq!(
            in_root(r, Path::new("/etc/cni")).unwrap(),
            r.join("etc/cni")
        );
    }
}
