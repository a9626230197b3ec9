//! Blocking client: routectl and the CNI plugin are short-lived processes with one request each,
//! so plain std sockets keep them free of an async runtime.

use super::api::{Command, ErrorKind, Request, Response, API_VERSION};
use serde::de::DeserializeOwned;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The agent is not running (or the path is wrong): the message names the socket tried.
    #[error("cannot reach gingham-agent at {path}: {source} (is the agent running? --socket picks another)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to gingham-agent at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gingham-agent at {path} sent an answer that is not valid JSON: {source}")]
    BadResponse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("gingham-agent speaks API version {agent}, this client speaks {API_VERSION}")]
    Version { agent: u32 },
    /// The agent answered with an error.
    #[error("{message}")]
    Agent {
        message: String,
        kind: Option<ErrorKind>,
    },
}

impl ClientError {
    /// The agent or its datastore is not there now: worth trying again later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Io { .. } => true,
            ClientError::Agent { kind, .. } => *kind == Some(ErrorKind::Unavailable),
            _ => false,
        }
    }
}

/// Sends one command and decodes the result as `T`.
pub fn call<T: DeserializeOwned>(
    socket: &Path,
    command: Command,
    timeout: Duration,
) -> Result<T, ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line =
        serde_json::to_vec(&Request::new(command)).map_err(|source| ClientError::BadResponse {
            path: socket.to_path_buf(),
            source,
        })?;
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    let response: Response =
        serde_json::from_str(&answer).map_err(|source| ClientError::BadResponse {
            path: socket.to_path_buf(),
            source,
        })?;
    if response.version != API_VERSION {
        return Err(ClientError::Version {
            agent: response.version,
        });
    }
    if !response.ok {
        return Err(ClientError::Agent {
            message: response.error.unwrap_or_else(|| "unknown error".into()),
            kind: response.kind,
        });
    }
    let result = response.result.as_deref().map_or("null", |r| r.get());
    serde_json::from_str(result).map_err(|source| ClientError::BadResponse {
        path: socket.to_path_buf(),
        source,
    })
}
