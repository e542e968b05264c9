//! Writes the development PKI `fixtures/identity.yaml` uses into `fixtures/identity/`: a CA,
//! a server certificate for `localhost` and `api.localhost`, one for `payments.localhost`, and a
//! client certificate the CA signed. For local runs only; nothing here is a secret worth
//! keeping.
//!
//!     cargo run -p gateway --example identity_fixtures [-- <directory>]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/identity"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Gatehouse development CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
    let files = [
        (
            "server",
            leaf(
                &ca,
                &["localhost", "api.localhost", "127.0.0.1"],
                ExtendedKeyUsagePurpose::ServerAuth,
            )?,
        ),
        (
            "payments",
            leaf(
                &ca,
                &["payments.localhost"],
                ExtendedKeyUsagePurpose::ServerAuth,
            )?,
        ),
        (
            "client",
            leaf(
                &ca,
                &["client.localhost"],
                ExtendedKeyUsagePurpose::ClientAuth,
            )?,
        ),
    ];
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for (name, (cert, key)) in files {
        std::fs::write(dir.join(format!("{name}.pem")), cert)?;
        std::fs::write(dir.join(format!("{name}.key")), key)?;
    }
    println!(
        "wrote ca.pem, server.*, payments.*, client.* to {}",
        dir.display()
    );
    Ok(())
}
