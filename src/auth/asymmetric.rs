//! Asymmetric signing keys for access tokens: ES256 (ECDSA P-256 with
//! SHA-256) and EdDSA (Ed25519), so the app's backends verify with public
//! keys that cannot mint tokens (API.md, "Algorithms").
//!
//! All the cryptography is `ring`'s (already in the tree through
//! `jsonwebtoken`): key generation (`generate_pkcs8`), PKCS#8 parsing,
//! signing and verifying. Keys are parsed once, at start: signing through
//! `jsonwebtoken::EncodingKey` would parse the PKCS#8 document again for every
//! token. What is written here is only the framing around it: PEM armor
//! (`pem-rfc7468`), the two fixed SubjectPublicKeyInfo prefixes of the keys we
//! accept, and the RFC 7638 JWK thumbprint that names a key (`kid`).
//!
//! A key has three states (DESIGN.md, "Keys"): *announced* and *retired* keys
//! are public keys that are accepted and published but do not sign; the
//! *current* key signs. [`AsymmetricKeys`] holds one current key and the others.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use sha2::{Digest, Sha256};

/// The asymmetric JWS algorithms the service signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256, fixed-size `r ‖ s` signatures (RFC 7518 §3.4).
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::EdDsa => jsonwebtoken::Algorithm::EdDSA,
        }
    }

    /// The JWK `kty` and `crv` of its keys.
    fn key_type(self) -> (&'static str, &'static str) {
        match self {
            Algorithm::Es256 => ("EC", "P-256"),
            Algorithm::EdDsa => ("OKP", "Ed25519"),
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Algorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::EdDsa => &signature::ED25519,
        }
    }

    /// DER of a SubjectPublicKeyInfo up to the key bytes. DER has one encoding
    /// per value, so an exact prefix match is a complete parse of the
    /// algorithm identifier (id-ecPublicKey + prime256v1, or id-Ed25519).
    fn spki_prefix(self) -> &'static [u8] {
        match self {
            Algorithm::Es256 => &[
                0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
                0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
            ],
            Algorithm::EdDsa => &[
                0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
            ],
        }
    }

    /// Bytes of a public key: an uncompressed P-256 point, or an Ed25519 key.
    fn public_key_len(self) -> usize {
        match self {
            Algorithm::Es256 => 65,
            Algorithm::EdDsa => 32,
        }
    }

    /// Bytes of a signature (both algorithms: 64).
    pub const SIGNATURE_LEN: usize = 64;

    /// Name of the key file generated into the data folder.
    pub fn key_file_name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "jwt_es256_key.pem",
            Algorithm::EdDsa => "jwt_eddsa_key.pem",
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a key could not be used. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM document")]
    NotPem,
    #[error("a PEM \"{0}\" is neither a PKCS#8 \"PRIVATE KEY\" nor a \"PUBLIC KEY\"")]
    UnexpectedLabel(String),
    #[error(
        "not a PKCS#8 {0} private key (ES256 takes P-256 keys, EdDSA Ed25519 keys; convert \
         a key with `openssl pkcs8 -topk8 -nocrypt`; P-256 keys must include their public key)"
    )]
    BadPrivateKey(Algorithm),
    #[error(
        "not a {0} public key (ES256 takes P-256 keys, uncompressed; EdDSA takes Ed25519 keys)"
    )]
    BadPublicKey(Algorithm),
    #[error("the key could not be generated")]
    Generation,
}

/// The members of a public JWK (RFC 7517) that describe the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub x: String,
    /// P-256 only.
    pub y: Option<String>,
}

/// A public key whose signatures are accepted: the current key's, or an
/// announced or retired one.
pub struct VerifyingKey {
    alg: Algorithm,
    kid: String,
    /// An uncompressed P-256 point (`04 ‖ x ‖ y`) or an Ed25519 key.
    public: Vec<u8>,
    /// The first segment of every token this key signs (the verifier's fast path).
    pub(crate) header_segment: String,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A key from its raw public bytes (an uncompressed point for P-256).
    pub fn from_public_bytes(alg: Algorithm, public: &[u8]) -> Result<Self, KeyError> {
        let shaped = public.len() == alg.public_key_len()
            && (alg != Algorithm::Es256 || public.first() == Some(&0x04));
        if !shaped {
            return Err(KeyError::BadPublicKey(alg));
        }
        let public = public.to_vec();
        let kid = thumbprint_of(&jwk_of(alg, &public));
        let mut header = jsonwebtoken::Header::new(alg.jwt_algorithm());
        header.kid = Some(kid.clone());
        let header_json = serde_json::to_vec(&header).expect("a header serialises");
        Ok(Self {
            alg,
            kid,
            public,
            header_segment: URL_SAFE_NO_PAD.encode(header_json),
        })
    }

    /// A key from a DER SubjectPublicKeyInfo.
    pub fn from_spki_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let public = der
            .strip_prefix(alg.spki_prefix())
            .ok_or(KeyError::BadPublicKey(alg))?;
        Self::from_public_bytes(alg, public)
    }

    /// A key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or a PEM PKCS#8
    /// `PRIVATE KEY`, whose public half is taken.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let (label, der) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|_| KeyError::NotPem)?;
        match label {
            "PUBLIC KEY" => Self::from_spki_der(alg, &der),
            "PRIVATE KEY" => Ok(SigningKey::from_pkcs8_der(alg, &der)?.public),
            other => Err(KeyError::UnexpectedLabel(other.to_owned())),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        let mut der = self.alg.spki_prefix().to_vec();
        der.extend_from_slice(&self.public);
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
            .expect("a short document encodes")
    }

    /// The key id: its RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as the public JWK members (for the key set).
    pub fn jwk(&self) -> PublicJwk {
        jwk_of(self.alg, &self.public)
    }

    /// Whether `signature` is this key's over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(self.alg.verification(), &self.public)
            .verify(message, signature)
            .is_ok()
    }
}

enum Pair {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

/// The private key that signs access tokens, with its public half.
pub struct SigningKey {
    pair: Pair,
    public: VerifyingKey,
    /// ECDSA needs a random nonce per signature.
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kid is public; the key is not.
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A key from a PKCS#8 document (DER).
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let pair = match alg {
            Algorithm::Es256 => Pair::Es256(
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                    .map_err(|_| KeyError::BadPrivateKey(alg))?,
            ),
            // "maybe_unchecked" accepts PKCS#8 v1 (what OpenSSL writes: no public
            // key inside); a v2 document's public key is still checked.
            Algorithm::EdDsa => Pair::EdDsa(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| KeyError::BadPrivateKey(alg))?,
            ),
        };
        let public = match &pair {
            Pair::Es256(pair) => pair.public_key().as_ref().to_vec(),
            Pair::EdDsa(pair) => pair.public_key().as_ref().to_vec(),
        };
        Ok(Self {
            pair,
            public: VerifyingKey::from_public_bytes(alg, &public)?,
            rng,
        })
    }

    /// A key from a PEM PKCS#8 `PRIVATE KEY`.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<Self, KeyError> {
        let (label, der) =
            pem_rfc7468::decode_vec(pem.trim().as_bytes()).map_err(|_| KeyError::NotPem)?;
        if label != "PRIVATE KEY" {
            return Err(KeyError::UnexpectedLabel(label.to_owned()));
        }
        Self::from_pkcs8_der(alg, &der)
    }

    /// A new random key, as a PEM PKCS#8 document.
    pub fn generate_pem(alg: Algorithm) -> Result<String, KeyError> {
        let rng = SystemRandom::new();
        let document = match alg {
            Algorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            Algorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| KeyError::Generation)?;
        let der = match alg {
            Algorithm::Es256 => document.as_ref().to_vec(),
            Algorithm::EdDsa => ed25519_pkcs8_v1(document.as_ref())?,
        };
        pem_rfc7468::encode_string("PRIVATE KEY", pem_rfc7468::LineEnding::LF, &der)
            .map_err(|_| KeyError::Generation)
    }

    /// The public half.
    pub fn public(&self) -> &VerifyingKey {
        &self.public
    }

    /// The JWS signature of `message` (64 bytes).
    pub fn sign(&self, message: &[u8]) -> Result<signature::Signature, ring::error::Unspecified> {
        match &self.pair {
            Pair::Es256(pair) => pair.sign(&self.rng, message),
            Pair::EdDsa(pair) => Ok(pair.sign(message)),
        }
    }
}

/// DER of a PKCS#8 v1 Ed25519 key up to its 32-byte seed (RFC 8410 §7).
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// ring writes Ed25519 keys as PKCS#8 v2 (with the public key), which
/// OpenSSL 3 cannot read; the generated file is written as v1 (the seed
/// alone, what `openssl genpkey` writes) so operators can use their tools on
/// it, e.g. `openssl pkey -pubout` to announce it.
fn ed25519_pkcs8_v1(v2: &[u8]) -> Result<Vec<u8>, KeyError> {
    // v2: 30 51 | 02 01 01 | 30 05 06 03 2b 65 70 | 04 22 04 20 <seed> | 81 21 00 <public>
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let seed = v2
        .strip_prefix(&V2_PREFIX)
        .and_then(|rest| rest.get(..32))
        .ok_or(KeyError::Generation)?;
    let mut v1 = ED25519_PKCS8_V1_PREFIX.to_vec();
    v1.extend_from_slice(seed);
    Ok(v1)
}

/// The access-token keys of an asymmetric mode: the current key signs; it and
/// the announced and retired keys are accepted and published.
#[derive(Debug)]
pub struct AsymmetricKeys {
    signing: SigningKey,
    /// Every accepted key but the current one, without duplicates.
    others: Vec<VerifyingKey>,
}

impl AsymmetricKeys {
    /// `others` must be of the signing key's algorithm; copies of the current
    /// key (a half-done rotation) and duplicates are dropped.
    pub fn new(signing: SigningKey, others: Vec<VerifyingKey>) -> Result<Self, KeyError> {
        let alg = signing.public.alg;
        let mut kept: Vec<VerifyingKey> = Vec::with_capacity(others.len());
        for key in others {
            if key.alg != alg {
                return Err(KeyError::BadPublicKey(alg));
            }
            if key.kid != signing.public.kid && kept.iter().all(|k| k.kid != key.kid) {
                kept.push(key);
            }
        }
        Ok(Self {
            signing,
            others: kept,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.signing.public.alg
    }

    /// The key that signs new tokens.
    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    /// Every accepted key, the current one first.
    pub fn accepted(&self) -> impl Iterator<Item = &VerifyingKey> {
        std::iter::once(&self.signing.public).chain(self.others.iter())
    }

    /// The accepted key with this `kid`.
    pub fn by_kid(&self, kid: &str) -> Option<&VerifyingKey> {
        self.accepted().find(|k| k.kid == kid)
    }
}

fn jwk_of(alg: Algorithm, public: &[u8]) -> PublicJwk {
    let (kty, crv) = alg.key_type();
    match alg {
        Algorithm::Es256 => PublicJwk {
            kty,
            crv,
            x: URL_SAFE_NO_PAD.encode(&public[1..33]),
            y: Some(URL_SAFE_NO_PAD.encode(&public[33..65])),
        },
        Algorithm::EdDsa => PublicJwk {
            kty,
            crv,
            x: URL_SAFE_NO_PAD.encode(public),
            y: None,
        },
    }
}

fn thumbprint_of(jwk: &PublicJwk) -> String {
    let mut members = vec![("crv", jwk.crv), ("kty", jwk.kty), ("x", jwk.x.as_str())];
    if let Some(y) = &jwk.y {
        members.push(("y", y));
    }
    thumbprint(&members)
}

/// The RFC 7638 JWK thumbprint of a key's required members: their JSON
/// object with the members in lexicographic order and no whitespace, hashed
/// with SHA-256, in base64url without padding.
pub fn thumbprint(members: &[(&str, &str)]) -> String {
    let mut members = members.to_vec();
    members.sort_by(|a, b| a.0.cmp(b.0));
    let object: serde_json::Map<String, serde_json::Value> = members
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    // serde_json writes a Map in key order (BTreeMap) with no whitespace.
    let json = serde_json::to_string(&object).expect("a JSON object serialises");
    URL_SAFE_NO_PAD.encode(Sha256::digest(json.as_bytes()))
}

/// Reads the key file of `alg` in `dir`, or creates it with a new random key
/// (mode 0600). Returns the key and whether it was just created, so the
/// caller can warn once.
pub fn load_or_create_key_file(dir: &Path, alg: Algorithm) -> std::io::Result<(SigningKey, bool)> {
    use std::io::Write;
    let invalid = |e: KeyError| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let path = dir.join(alg.key_file_name());
    match std::fs::read_to_string(&path) {
        Ok(pem) => Ok((SigningKey::from_pem(alg, &pem).map_err(invalid)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::private_files::create_dir_all(dir)?;
            let pem = SigningKey::generate_pem(alg).map_err(invalid)?;
            let key = SigningKey::from_pem(alg, &pem).map_err(invalid)?;
            let mut file = crate::private_files::create_new_options().open(&path)?;
            file.write_all(pem.as_bytes())?;
            file.sync_all()?;
            Ok((key, true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7517 Appendix A.1/A.2: the example P-256 key (x, y, d), as PKCS#8
    /// and SubjectPublicKeyInfo PEM documents.
    const RFC7517_P256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg870MB6gfuTJ4HtUn
UvYMyJpr5eUZNP4Bk43bVdj3eAGhRANCAAQwoEJM0hwpRIOKLXXJKzfnbqINnwCJ
OjtO7oo8Cq/sPuBLZekkVtmIi1Kzeb371R7oae8fD8ZbZllpW2zOCBcj
-----END PRIVATE KEY-----
";
    const RFC7517_P256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEMKBCTNIcKUSDii11ySs3526iDZ8A
iTo7Tu6KPAqv7D7gS2XpJFbZiItSs3m9+9Ue6GnvHw/GW2ZZaVtszggXIw==
-----END PUBLIC KEY-----
";
    /// RFC 8037 Appendix A.1/A.2: the example Ed25519 key (d, x), as PKCS#8
    /// v1 (what OpenSSL writes) and SubjectPublicKeyInfo PEM documents.
    const RFC8037_ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g
-----END PRIVATE KEY-----
";
    const RFC8037_ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
-----END PUBLIC KEY-----
";

    #[test]
    fn the_thumbprint_of_the_rfc_7638_example_key_is_the_published_one() {
        // RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFx\
                 uhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6\
                 Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n9\
                 1CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-\
                 csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(&[("kty", "RSA"), ("n", n), ("e", "AQAB")]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn the_kid_of_the_rfc_8037_example_key_is_its_published_thumbprint() {
        // RFC 8037 Appendix A.3.
        let expected = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
        let private = SigningKey::from_pem(Algorithm::EdDsa, RFC8037_ED25519_PRIVATE).unwrap();
        assert_eq!(private.public().kid(), expected);
        assert_eq!(
            private.public().jwk().x,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        let public = VerifyingKey::from_pem(Algorithm::EdDsa, RFC8037_ED25519_PUBLIC).unwrap();
        assert_eq!(public.kid(), expected);
        assert_eq!(private.public().to_pem(), RFC8037_ED25519_PUBLIC);
    }

    #[test]
    fn ed25519_signs_the_rfc_8037_example_byte_for_byte() {
        // RFC 8037 Appendix A.4 (Ed25519 is deterministic).
        let key = SigningKey::from_pem(Algorithm::EdDsa, RFC8037_ED25519_PRIVATE).unwrap();
        let input = b"eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
        let signature = key.sign(input).unwrap();
        assert_eq!(
            URL_SAFE_NO_PAD.encode(signature.as_ref()),
            "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
        assert!(key.public().verify(input, signature.as_ref()));
    }

    #[test]
    fn the_kid_of_the_rfc_7517_p256_key_is_its_thumbprint() {
        let private = SigningKey::from_pem(Algorithm::Es256, RFC7517_P256_PRIVATE).unwrap();
        let jwk = private.public().jwk();
        assert_eq!(
            (jwk.kty, jwk.crv, jwk.x.as_str(), jwk.y.as_deref()),
            (
                "EC",
                "P-256",
                "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
                Some("4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM")
            )
        );
        // SHA-256 of {"crv":"P-256","kty":"EC","x":"MKBC…","y":"4Etl…"}.
        let expected = "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s";
        assert_eq!(private.public().kid(), expected);
        let public = VerifyingKey::from_pem(Algorithm::Es256, RFC7517_P256_PUBLIC).unwrap();
        assert_eq!(public.kid(), expected);
        assert_eq!(public.to_pem(), RFC7517_P256_PUBLIC);
        assert_eq!(private.public().to_pem(), RFC7517_P256_PUBLIC);
        let from_private = VerifyingKey::from_pem(Algorithm::Es256, RFC7517_P256_PRIVATE).unwrap();
        assert_eq!(from_private.kid(), expected);
    }

    #[test]
    fn generated_keys_sign_and_verify_in_both_algorithms() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let pem = SigningKey::generate_pem(alg).unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
            let key = SigningKey::from_pem(alg, &pem).unwrap();
            let signature = key.sign(b"message").unwrap();
            assert_eq!(signature.as_ref().len(), Algorithm::SIGNATURE_LEN);
            assert!(key.public().verify(b"message", signature.as_ref()));
            assert!(!key.public().verify(b"messagf", signature.as_ref()));
            assert_eq!(key.public().kid().len(), 43);
        }
    }

    #[test]
    fn a_key_of_the_other_algorithm_or_no_key_is_refused() {
        assert_eq!(
            SigningKey::from_pem(Algorithm::Es256, RFC8037_ED25519_PRIVATE).unwrap_err(),
            KeyError::BadPrivateKey(Algorithm::Es256)
        );
        assert_eq!(
            SigningKey::from_pem(Algorithm::EdDsa, RFC7517_P256_PRIVATE).unwrap_err(),
            KeyError::BadPrivateKey(Algorithm::EdDsa)
        );
        assert_eq!(
            VerifyingKey::from_pem(Algorithm::EdDsa, RFC7517_P256_PUBLIC).unwrap_err(),
            KeyError::BadPublicKey(Algorithm::EdDsa)
        );
        assert_eq!(
            SigningKey::from_pem(Algorithm::Es256, RFC7517_P256_PUBLIC).unwrap_err(),
            KeyError::UnexpectedLabel("PUBLIC KEY".into())
        );
        assert_eq!(
            VerifyingKey::from_pem(Algorithm::Es256, "a secret, not a key").unwrap_err(),
            KeyError::NotPem
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n";
        assert!(matches!(
            VerifyingKey::from_pem(Algorithm::Es256, sec1),
            Err(KeyError::UnexpectedLabel(_))
        ));
    }

    #[test]
    fn announced_and_retired_keys_are_accepted_once_and_only_of_the_same_algorithm() {
        let current = SigningKey::from_pem(Algorithm::Es256, RFC7517_P256_PRIVATE).unwrap();
        let other = SigningKey::from_pem(
            Algorithm::Es256,
            &SigningKey::generate_pem(Algorithm::Es256).unwrap(),
        )
        .unwrap();
        let other_kid = other.public().kid().to_owned();
        let same_as_current =
            VerifyingKey::from_pem(Algorithm::Es256, RFC7517_P256_PUBLIC).unwrap();
        let keys = AsymmetricKeys::new(
            current,
            vec![
                same_as_current,
                VerifyingKey::from_public_bytes(Algorithm::Es256, &other.public().public).unwrap(),
                VerifyingKey::from_public_bytes(Algorithm::Es256, &other.public().public).unwrap(),
            ],
        )
        .unwrap();
        let kids: Vec<&str> = keys.accepted().map(VerifyingKey::kid).collect();
        assert_eq!(
            kids,
            [
                "cn-I_WNMClehiVp51i_0VpOENW1upEerA8sEam5hn-s",
                other_kid.as_str()
            ]
        );
        assert!(keys.by_kid(&other_kid).is_some());
        assert!(keys.by_kid("nope").is_none());

        let current = SigningKey::from_pem(Algorithm::Es256, RFC7517_P256_PRIVATE).unwrap();
        let ed = VerifyingKey::from_pem(Algorithm::EdDsa, RFC8037_ED25519_PUBLIC).unwrap();
        assert!(AsymmetricKeys::new(current, vec![ed]).is_err());
    }

    #[test]
    fn the_key_file_is_created_once_private_and_reused() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let dir = tempfile::tempdir().unwrap();
            let (first, created) = load_or_create_key_file(dir.path(), alg).unwrap();
            assert!(created);
            let (second, created) = load_or_create_key_file(dir.path(), alg).unwrap();
            assert!(!created);
            assert_eq!(first.public().kid(), second.public().kid());
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(dir.path().join(alg.key_file_name()))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
    }
}
