//! `keyway-gcp-emulator [--port N]`: the GCP Secret Manager emulator as a process, for Google's Python client
//! and for manual use. Prints `listening on http://127.0.0.1:PORT` once it accepts connections.

use anyhow::Context as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port = keyway_testkit::port_argument("keyway-gcp-emulator")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("bind 127.0.0.1")?;
    println!("listening on http://{}", listener.local_addr()?);
    keyway_testkit::gcp_emulator::serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .context("serve")
}
