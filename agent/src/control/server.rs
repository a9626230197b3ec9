//! The agent side of the control socket: accepts connections on a Unix socket (mode 0600, since
//! it can assign addresses and read the whole RIB) and hands each request to a [`Handler`].

use super::api::{Request, Response, API_VERSION};
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// Longest request we read: commands are small; this bounds memory per connection.
const MAX_REQUEST: u64 = 64 * 1024;
/// A client that connects and says nothing must not hold a task forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Response> + Send + 'a>>;

/// What answers requests: the agent implements it over its speaker, IPAM and kernel state.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: Request) -> HandlerFuture<'_>;
}

/// How often the server checks that its socket file is still its own.
const CHECK_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Someone removed the socket file or bound another socket at its path: no client (the CNI
    /// plugin, routectl) can reach this agent any more, so it must not go on as if it could.
    #[error(
        "control socket {path} was removed or replaced: clients can no longer reach this agent"
    )]
    Gone { path: PathBuf },
}

/// A bound control socket.
pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file's (device, inode) as bound.
    file: (u64, u64),
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl Server {
    /// Binds `path` (mode 0600), replacing a stale socket file left by a previous run.
    pub fn bind(path: &Path) -> Result<Server, ServerError> {
        let bind_err = |source| ServerError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(bind_err)?;
        }
        // A socket file from a previous run would make bind fail with EADDRINUSE.
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        // The socket is made with mode 0600 (umask 0177 around bind), so there is no moment at
        // which anybody else may connect; the chmod after it is for a umask we did not expect.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old);
        let listener = bound.map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        let file = file_id(path).ok_or_else(|| {
            bind_err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the socket file vanished right after bind",
            ))
        })?;
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            file,
        })
    }

    /// Answers connections, one task each, for as long as the agent runs. Ends with
    /// [`ServerError::Gone`] when the socket file is no longer this server's.
    pub async fn serve(self, handler: Arc<dyn Handler>) -> Result<(), ServerError> {
        let mut check = tokio::time::interval(CHECK_EVERY);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = check.tick() => {
                    if file_id(&self.path) != Some(self.file) {
                        return Err(ServerError::Gone { path: self.path.clone() });
                    }
                    continue;
                }
            };
            match accepted {
                Ok((stream, _)) => {
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, handler).await {
                            tracing::debug!("control connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Binds `path` and serves until the returned task is aborted.
pub fn serve(
    path: &Path,
    handler: Arc<dyn Handler>,
) -> Result<tokio::task::JoinHandle<()>, ServerError> {
    let server = Server::bind(path)?;
    Ok(tokio::spawn(async move {
        let _ = server.serve(handler).await;
    }))
}

async fn answer(stream: UnixStream, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_REQUEST));
    let read = tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await;
    let response = match read {
        Err(_) => Response::err("request timed out"),
        Ok(Err(e)) => Response::err(format!("reading request: {e}")),
        Ok(Ok(_)) => match serde_json::from_str::<serde_json::Value>(&line) {
            Err(e) => Response::err(format!("request is not valid JSON: {e}")),
            Ok(value) => {
                let version = value.get("version").and_then(|v| v.as_u64());
                if version != Some(API_VERSION as u64) {
                    Response::err(format!(
                        "unsupported API version {}; this agent speaks {API_VERSION}",
                        version
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "(none)".into())
                    ))
                } else {
                    match serde_json::from_value::<Request>(value) {
                        Ok(request) => handler.handle(request).await,
                        Err(e) => Response::err(format!("bad request: {e}")),
                    }
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::super::api::{Command, Summary};
    use super::super::{call, ClientError};
    use super::*;

    struct Fixed;
    impl Handler for Fixed {
        fn handle(&self, request: Request) -> HandlerFuture<'_> {
            Box::pin(async move {
                match request.command {
                    Command::Summary => Response::ok(&Summary {
                        node: "n1".into(),
                        ip: "172.18.0.2".parse().unwrap(),
                        asn: 64512,
                        router_id: "172.18.0.2".parse().unwrap(),
                        peers: vec![],
                    }),
                    _ => Response::err("not here"),
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn round_trip_mode_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/agent.sock");
        let task = serve(&path, Arc::new(Fixed)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let p = path.clone();
        let summary: Summary =
            tokio::task::spawn_blocking(move || call(&p, Command::Summary, Duration::from_secs(5)))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(summary.node, "n1");
        assert_eq!(summary.asn, 64512);

        let p = path.clone();
        let err = tokio::task::spawn_blocking(move || {
            call::<serde_json::Value>(&p, Command::Peers, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(
            matches!(err, ClientError::Agent { ref message, .. } if message == "not here"),
            "{err}"
        );

        // A request with another version is refused, naming both versions.
        let mut s = tokio::net::UnixStream::connect(&path).await.unwrap();
        s.write_all(b"{\"version\":7,\"command\":\"summary\"}\n")
            .await
            .unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).await.unwrap();
        let r: Response = serde_json::from_str(&line).unwrap();
        assert!(!r.ok);
        assert!(r.error.unwrap().contains("unsupported API version 7"));

        task.abort();
        // An agent that is not running: the error names the socket.
        let missing = dir.path().join("nope.sock");
        let err = call::<Summary>(&missing, Command::Summary, Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("nope.sock"), "{err}");
    }
}
