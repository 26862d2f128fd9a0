//! Native TLS (promise A4: hardening): `covenant serve --tls-cert PEM --tls-key PEM` answers
//! HTTPS itself, with rustls on the ring provider, instead of relying on a proxy in front.
//!
//! The listener hands axum only connections whose handshake finished: handshakes run in their
//! own tasks (bounded by a timeout), so a client that opens a connection and says nothing holds
//! up no one else.

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the certificate chain and private key (PEM files) into a server configuration. Every
/// failure names the file and what is wrong with it, never its contents.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let cert_text = std::fs::read(cert)
        .with_context(|| format!("reading the TLS certificate {}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            anyhow::anyhow!(
                "the TLS certificate {} is not valid PEM: {error}",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        bail!(
            "the TLS certificate {} holds no certificate (expected PEM `BEGIN CERTIFICATE`)",
            cert.display()
        );
    }
    let key_text =
        std::fs::read(key).with_context(|| format!("reading the TLS key {}", key.display()))?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|error| {
        anyhow::anyhow!(
            "the TLS key {} holds no usable private key (expected PEM PKCS#8, PKCS#1 or SEC1): \
             {error}",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .with_context(|| {
            format!(
                "the TLS key {} does not go with the certificate {}, or is not supported",
                key.display(),
                cert.display()
            )
        })?;
    // axum serves HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A listener whose connections are TLS streams with finished handshakes.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `listener`; the accepting task ends when this listener is dropped.
    pub fn new(listener: TcpListener, config: rustls::ServerConfig) -> anyhow::Result<Self> {
        let local_addr = listener
            .local_addr()
            .context("reading the listening address")?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (sender, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = sender.closed() => break,
                };
                let (tcp, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        // Out of descriptors and the like: wait a little rather than spin.
                        tracing::error!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, peer)).await;
                        }
                        // A failed handshake is the client's business (a scanner, plain HTTP
                        // on the TLS port); the peer's address is personal, so it is not logged.
                        Ok(Err(error)) => tracing::debug!(%error, "a TLS handshake failed"),
                        Err(_) => tracing::debug!("a TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local_addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accepting task only ends once this listener is gone, so this is not reached;
            // waiting forever is what a listener with nothing to accept does.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
