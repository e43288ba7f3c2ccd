//! `keyway-azure-kv --ca-out FILE [--port N]`: the Azure Key Vault emulator as a process, for Microsoft's Python
//! client and for manual use. Writes its certificate (PEM) to FILE, then prints `listening on https://127.0.0.1:PORT
//! controls http://127.0.0.1:PORT2` once it accepts connections.

use anyhow::Context as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut port, mut ca_out) = (0u16, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args
                    .next()
                    .context("--port needs a number")?
                    .parse()
                    .context("--port needs a number")?;
            }
            "--ca-out" => ca_out = Some(args.next().context("--ca-out needs a file")?),
            other => anyhow::bail!(
                "unknown argument `{other}`; usage: keyway-azure-kv --ca-out FILE [--port N]"
            ),
        }
    }
    let ca_out =
        ca_out.context("--ca-out FILE is required: clients trust the certificate written there")?;
    let (pem, tls) = keyway_testkit::azure_kv::certificate();
    std::fs::write(&ca_out, pem).with_context(|| format!("write {ca_out}"))?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .context("bind 127.0.0.1")?;
    let controls = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("bind 127.0.0.1")?;
    println!(
        "listening on https://{} controls http://{}",
        listener.local_addr()?,
        controls.local_addr()?
    );
    keyway_testkit::azure_kv::serve(listener, controls, tls, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
