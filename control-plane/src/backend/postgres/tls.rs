//! The `db` setting's `postgres://` URL: the driver's connection settings
//! plus `sslrootcert=PATH` (a PEM file of CA certificates to trust, as
//! libpq names it), and the rustls connector they ask for.
//!
//! TLS is always verified when it is used: the server's certificate must
//! chain to the system's roots or to `sslrootcert` and name the host
//! connected to. `sslmode=disable` sends nothing over TLS, `prefer` (the
//! driver's default) uses it when the server offers it, `require` refuses
//! a server that does not.

use crate::domain::error::{Error, Result};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A parsed `postgres://` URL.
pub(super) struct Settings {
    /// The driver's settings.
    pub(super) config: tokio_postgres::Config,
    /// Extra CA certificates.
    root_cert: Option<PathBuf>,
}

fn bad(message: impl std::fmt::Display) -> Error {
    Error::BadRequest(format!("db: {message}"))
}

impl Settings {
    /// Split off what the driver does not know and parse the rest.
    pub(super) fn parse(url: &str) -> Result<Settings> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut root_cert = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslrootcert", path)) => root_cert = Some(PathBuf::from(unescape(path)?)),
                _ => rest.push(pair),
            }
        }
        let driver_url = if rest.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", rest.join("&"))
        };
        let config: tokio_postgres::Config = driver_url
            .parse()
            .map_err(|e| bad(format!("not a PostgreSQL URL: {e}")))?;
        if config.get_hosts().is_empty() {
            return Err(bad("the PostgreSQL URL names no host"));
        }
        if config.get_dbname().is_none() {
            return Err(bad("the PostgreSQL URL names no database"));
        }
        Ok(Settings { config, root_cert })
    }

    /// The URL without its password, for logs.
    pub(super) fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// The rustls connector: system roots plus `sslrootcert`.
    pub(super) fn connector(&self) -> Result<MakeRustlsConnect> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system certificate rustls cannot use is skipped, as every
            // client does; the private CA below is checked strictly.
            let _ = roots.add(cert);
        }
        if let Some(path) = &self.root_cert {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("sslrootcert {}: {e}", path.display())))?;
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Internal(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// Percent-decode a URL query value.
fn unescape(value: &str) -> Result<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad(format!("bad escape in {value:?}")))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad(format!("{value:?} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_off_the_root_certificate_and_hides_the_password() {
        let s = Settings::parse(
            "postgres://gh:secret@127.0.0.1:6543/cp?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(s.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        assert_eq!(
            s.config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(s.describe(), "postgres://gh@127.0.0.1:6543/cp");
        assert!(!s.describe().contains("secret"));
    }

    #[test]
    fn refuses_what_is_not_a_database_url() {
        for url in [
            "postgres://gh@127.0.0.1:6543/cp?no_such_option=1",
            "postgres://gh@127.0.0.1:6543",
            "postgres://gh@127.0.0.1:6543/cp?sslrootcert=%zz",
        ] {
            assert!(
                matches!(Settings::parse(url), Err(Error::BadRequest(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn a_root_certificate_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let s = Settings::parse(&format!(
            "postgres://gh@127.0.0.1/cp?sslrootcert={}",
            path.display()
        ))
        .unwrap();
        assert!(matches!(s.connector(), Err(Error::BadRequest(_))));
    }
}
