//! The key that signs content credentials: the operator's certificate
//! chain and private key (`c2pa_cert_chain_file`, `c2pa_private_key`), or
//! — so a fresh install marks its images from the first one — a test CA and
//! a signing certificate under it, generated into `<data_dir>/c2pa/` on
//! first start. C2PA refuses self-signed signing certificates, hence the
//! two. The generated CA is trusted by this studio's own verifier only.

use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM texts: the chain (signing certificate first) and its private key
/// (PKCS#8), and the anchors the verifier trusts besides the C2PA list.
pub struct SigningMaterial {
    pub chain_pem: String,
    pub key_pem: String,
    pub trust_pem: Option<String>,
}

const DIR: &str = "c2pa";
const CHAIN: &str = "signing-chain.pem";
const KEY: &str = "signing-key.pem";
const CA: &str = "test-ca.pem";

/// The generated test material in `data_dir`, made on first use.
pub fn generated(data_dir: &Path) -> anyhow::Result<SigningMaterial> {
    let dir = data_dir.join(DIR);
    let (chain, key, ca) = (dir.join(CHAIN), dir.join(KEY), dir.join(CA));
    if !(chain.exists() && key.exists() && ca.exists()) {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = generate()?;
        std::fs::write(&ca, made.trust_pem.as_deref().unwrap_or_default())?;
        std::fs::write(&chain, &made.chain_pem)?;
        write_private(&key, &made.key_pem)?;
        tracing::warn!(dir = %dir.display(),
            "generated a test key for content credentials: images are signed, but only this studio trusts the signer (set c2pa_cert_chain_file and c2pa_private_key)");
    }
    Ok(SigningMaterial {
        chain_pem: std::fs::read_to_string(&chain)?,
        key_pem: std::fs::read_to_string(&key)?,
        trust_pem: Some(std::fs::read_to_string(&ca)?),
    })
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        Ok(())
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, text)?;
        Ok(())
    }
}

fn name(common: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common);
    dn.push(DnType::OrganizationName, "Pingvas Studio");
    dn
}

/// A test CA (ECDSA P-256) and a signing certificate under it with what
/// C2PA asks of one: digitalSignature, the emailProtection EKU, subject and
/// authority key identifiers.
pub fn generate() -> anyhow::Result<SigningMaterial> {
    let now = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name = name("Pingvas Studio Test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(3650);
    let ca_cert = ca.self_signed(&ca_key)?;

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(Vec::<String>::new())?;
    leaf.distinguished_name = name("Pingvas Studio Content Credentials");
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::EmailProtection];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now - time::Duration::days(1);
    leaf.not_after = now + time::Duration::days(3650);
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;
    Ok(SigningMaterial {
        chain_pem: format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key_pem: key.serialize_pem(),
        trust_pem: Some(ca_cert.pem()),
    })
}
