//! A self-signed signing certificate for a key, for users without a PKI, as the Notary
//! Project's certificate rules want a self-signed leaf: KeyUsage digitalSignature only
//! (critical; `notation verify` refuses keyEncipherment beside it), ExtKeyUsage codeSigning,
//! BasicConstraints CA:FALSE (critical), ecdsa-with-SHA256, CN = the name given.

use std::time::SystemTime;

use jiff::{SignedDuration, Timestamp};
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder as _, CertificateBuilder};
use x509_cert::der::Encode as _;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::{Extension, ToExtension as _};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use trustkeeper_notary::SigningKey;

/// Lifetime of the certificates made here.
pub const LIFETIME: SignedDuration = SignedDuration::from_hours(24 * 3650);

/// Why no certificate was made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a signing certificate for key {key_id}: {reason}")]
pub struct CertificateError {
    pub key_id: String,
    pub reason: String,
}

/// The PEM of a self-signed signing certificate for `key`, `CN=<name>`, valid from `now`.
pub fn self_signed(
    key: &SigningKey,
    name: &str,
    now: Timestamp,
) -> Result<String, CertificateError> {
    let fail = |reason: String| CertificateError {
        key_id: key.key_id().to_string(),
        reason,
    };
    if name.is_empty()
        || name.len() > 64
        || name
            .chars()
            .any(|c| c.is_control() || ",+=\"\\<>;#".contains(c))
    {
        return Err(fail(format!(
            "the name {name:?} must be 1-64 characters without control characters or , + = \" \\ < > ; #"
        )));
    }
    let sk = key
        .p256()
        .ok_or_else(|| fail("an ECDSA P-256 key is needed".into()))?;
    let spki = SubjectPublicKeyInfoOwned::from_key(sk.verifying_key())
        .map_err(|e| fail(format!("public key: {e}")))?;
    let until = now.checked_add(LIFETIME).map_err(|e| fail(e.to_string()))?;
    let time = |t: Timestamp| Time::try_from(SystemTime::from(t)).map_err(|e| fail(e.to_string()));
    let validity = Validity::new(time(now)?, time(until)?);
    let subject: Name = format!("CN={name}")
        .parse()
        .map_err(|e| fail(format!("subject: {e}")))?;
    let serial: [u8; 16] = rand::random();
    let serial = SerialNumber::new(&serial).map_err(|e| fail(format!("serial: {e}")))?;
    let builder = CertificateBuilder::new(Leaf { subject }, serial, validity, spki)
        .map_err(|e| fail(e.to_string()))?;
    let cert = builder
        .build::<_, p256::ecdsa::DerSignature>(&sk)
        .map_err(|e| fail(e.to_string()))?;
    let der = cert.to_der().map_err(|e| fail(e.to_string()))?;
    Ok(pem::encode(&pem::Pem::new("CERTIFICATE", der)))
}

struct Leaf {
    subject: Name,
}

impl BuilderProfile for Leaf {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: x509_cert::spki::SubjectPublicKeyInfoRef<'_>,
        tbs: &x509_cert::TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        use x509_cert::der::oid::db::rfc5280::ID_KP_CODE_SIGNING;
        let subject = tbs.subject();
        Ok(vec![
            (&KeyUsage(KeyUsages::DigitalSignature.into())).to_extension(subject, &[])?,
            (&ExtendedKeyUsage(vec![ID_KP_CODE_SIGNING])).to_extension(subject, &[])?,
            (
                true,
                &BasicConstraints {
                    ca: false,
                    path_len_constraint: None,
                },
            )
                .to_extension(subject, &[])?,
        ])
    }
}
