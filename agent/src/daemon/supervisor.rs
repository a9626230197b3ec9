//! The supervisor: every long-running task of the agent runs in one `JoinSet`, and the first one
//! to end (returning, failing or panicking) stops the agent with an error that names it.
//!
//! A half-working agent is worse than a stopped one: an agent whose kernel writer died keeps
//! its BGP sessions up and tells every peer it is fine while nothing programs its routes. A
//! stopped agent is restarted by its DaemonSet, and its routes stay in the kernel meanwhile.

use super::error::AgentError;
use std::collections::HashMap;
use std::future::Future;
use tokio::task::{Id, JoinSet};

#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<Result<(), AgentError>>,
    names: HashMap<Id, &'static str>,
}

impl Supervisor {
    pub fn new() -> Self {
        Supervisor::default()
    }

    /// Runs `task` under supervision.
    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = Result<(), AgentError>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Waits for the first task to end and says why, as an error: supervised tasks are meant
    /// to run for as long as the agent does. `None` when nothing runs.
    pub async fn first_exit(&mut self) -> Option<AgentError> {
        let result = self.tasks.join_next_with_id().await?;
        Some(match result {
            Ok((id, result)) => AgentError::TaskEnded {
                task: self.name(id),
                reason: result.err().map(Box::new),
            },
            Err(e) => {
                let task = self.name(e.id());
                if e.is_panic() {
                    let payload = e.into_panic();
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".into());
                    AgentError::TaskPanicked { task, message }
                } else {
                    AgentError::TaskEnded { task, reason: None }
                }
            }
        })
    }

    fn name(&self, id: Id) -> &'static str {
        self.names.get(&id).copied().unwrap_or("unknown")
    }

    /// Stops every task (on shutdown).
    pub async fn stop_all(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_task_that_returns_stops_everything_with_its_name() {
        let mut s = Supervisor::new();
        s.spawn("forever", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        s.spawn("mesh", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        });
        let e = s.first_exit().await.unwrap();
        assert!(
            matches!(
                e,
                AgentError::TaskEnded {
                    task: "mesh",
                    reason: None
                }
            ),
            "{e}"
        );
        s.stop_all().await;
        assert!(s.first_exit().await.is_none(), "everything stopped");
    }

    #[tokio::test]
    async fn a_failing_task_carries_its_error() {
        let mut s = Supervisor::new();
        s.spawn("routing owner", async { Err(AgentError::OwnerStopped) });
        let e = s.first_exit().await.unwrap();
        assert_eq!(
            e.to_string(),
            "the routing owner task stopped: the routing owner has stopped"
        );
    }

    #[tokio::test]
    async fn a_panicking_task_is_reported_not_swallowed() {
        let mut s = Supervisor::new();
        s.spawn("kernel writer", async {
            let v: Vec<u8> = Vec::new();
            if v.is_empty() {
                panic!("index out of range");
            }
            Ok(())
        });
        let e = s.first_exit().await.unwrap();
        assert!(
            matches!(&e, AgentError::TaskPanicked { task: "kernel writer", message } if message == "index out of range"),
            "{e}"
        );
    }
}
