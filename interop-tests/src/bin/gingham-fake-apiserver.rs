//! A Kubernetes API server in memory, over plain HTTP, for tests of the `kubernetes` datastore
//! with real agents in network namespaces: the store's own test API (`ipam::store::kube::fake`)
//! behind a socket. It serves what the agent uses (Nodes, Leases, the gingham.io custom
//! resources; get, list, watch, create, replace, merge patch, delete with preconditions) and
//! nothing else: no discovery, no authentication, no schema validation. Not for production.
//!
//! ```text
//! gingham-fake-apiserver --listen 172.18.255.250:6443 --node node0 --node node1
//! ```

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Parser;
use http_body_util::BodyExt;
use ipam::store::kube::fake::FakeApi;

#[derive(Parser)]
#[command(
    name = "gingham-fake-apiserver",
    version,
    about = "A Kubernetes API server in memory, for tests"
)]
struct Cli {
    /// Address to serve plain HTTP on.
    #[arg(long)]
    listen: SocketAddr,
    /// A Node object to start with, as its kubelet would have created it (repeatable).
    #[arg(long = "node")]
    nodes: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let api = FakeApi::new();
    for n in &cli.nodes {
        api.add_node(n);
    }
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    eprintln!("gingham-fake-apiserver: serving on http://{}", cli.listen);
    loop {
        let (stream, _) = listener.accept().await?;
        let api = api.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let api = api.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body.collect().await?.to_bytes();
                        eprintln!("{} {}", parts.method, parts.uri);
                        Ok::<_, hyper::Error>(api.handle(parts.method, &parts.uri, &bytes))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
