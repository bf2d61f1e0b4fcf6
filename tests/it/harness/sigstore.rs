//! A sigstore of the tests' own, as a site's signatures come from the public one: a Fulcio
//! CA (a root and the intermediate that issues), a certificate-transparency log, a Rekor v1
//! log (ECDSA: signed entry timestamps and checkpoints), a Rekor v2 log (Ed25519 checkpoints;
//! no time, so an RFC 3161 timestamp authority places its entries in time), and the
//! `trusted_root.json` that names them. It issues short-lived certificates with Fulcio's
//! extensions and an embedded SCT, logs entries with inclusion proofs, and signs images
//! (cosign's `.sig` layers with certificate and Rekor bundle annotations; sigstore bundles as
//! OCI referrers) and files (sigstore bundles v0.3), as cosign and GitHub's actions do.
//!
//! Nothing here uses haul's own code: what it makes, real cosign 2.5 accepts (the keyless
//! tests check it), so the material is sigstore's, not haul's idea of it.

#![allow(dead_code)]

use std::cell::RefCell;
use std::path::PathBuf;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use serde_json::json;
use sha2::{Digest as _, Sha256};

pub const REKOR_URL: &str = "https://rekor.haul.test";
/// Rekor v1 names its checkpoints `<host> - <tree id>`.
pub const REKOR_ORIGIN: &str = "rekor.haul.test - 7391";
pub const REKOR2_URL: &str = "https://log2026.rekor.haul.test";
pub const REKOR2_ORIGIN: &str = "log2026.rekor.haul.test";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = b64(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

// DER, by hand: the SCT list and the RFC 3161 token are built byte by byte.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut rest = arc >> 7;
        while rest > 0 {
            chunk.push(0x80 | (rest & 0x7f) as u8);
            rest >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

fn integer(value: u64) -> Vec<u8> {
    let mut bytes = value.to_be_bytes().to_vec();
    while bytes.len() > 1 && bytes[0] == 0 && bytes[1] & 0x80 == 0 {
        bytes.remove(0);
    }
    if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    tlv(0x02, &bytes)
}

/// The first element of a DER SEQUENCE's content (a certificate's TBS).
fn first_element(der: &[u8]) -> Vec<u8> {
    let content_at = if der[1] < 0x80 {
        2
    } else {
        2 + (der[1] & 0x7f) as usize
    };
    let inner = &der[content_at..];
    let (header, len) = if inner[1] < 0x80 {
        (2, inner[1] as usize)
    } else {
        let count = (inner[1] & 0x7f) as usize;
        let len = inner[2..2 + count]
            .iter()
            .fold(0usize, |l, b| (l << 8) | *b as usize);
        (2 + count, len)
    };
    inner[..header + len].to_vec()
}

/// The elements of a DER constructed element's content, each as encoded.
fn elements(content: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (header, len) = if rest[1] < 0x80 {
            (2, rest[1] as usize)
        } else {
            let count = (rest[1] & 0x7f) as usize;
            let len = rest[2..2 + count]
                .iter()
                .fold(0usize, |l, b| (l << 8) | *b as usize);
            (2 + count, len)
        };
        out.push(rest[..header + len].to_vec());
        rest = &rest[header + len..];
    }
    out
}

/// The content of a DER element (its header dropped).
fn content(element: &[u8]) -> &[u8] {
    let header = if element[1] < 0x80 {
        2
    } else {
        2 + (element[1] & 0x7f) as usize
    };
    &element[header..]
}

/// A certificate's issuer and serial number, as CMS names a signer (IssuerAndSerialNumber).
fn issuer_and_serial(certificate: &[u8]) -> Vec<u8> {
    let tbs = first_element(certificate);
    let fields = elements(content(&tbs));
    // [0] version, serialNumber, signature, issuer, …
    seq(&[fields[3].clone(), fields[1].clone()])
}

fn ecdsa(key: &KeyPair) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key.serialize_der()).unwrap()
}

fn sign(key: &EcdsaKeyPair, message: &[u8]) -> Vec<u8> {
    key.sign(&SystemRandom::new(), message)
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Who a certificate names, and the OIDC issuer that vouched for it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub san: San,
    pub issuer: String,
}

#[derive(Clone, Debug)]
pub enum San {
    Email(String),
    Uri(String),
}

impl Identity {
    pub fn email(email: &str, issuer: &str) -> Identity {
        Identity {
            san: San::Email(email.to_string()),
            issuer: issuer.to_string(),
        }
    }

    pub fn uri(uri: &str, issuer: &str) -> Identity {
        Identity {
            san: San::Uri(uri.to_string()),
            issuer: issuer.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        match &self.san {
            San::Email(s) | San::Uri(s) => s,
        }
    }
}

/// A signer's certificate and key, as Fulcio issues them.
pub struct Leaf {
    pub key: EcdsaKeyPair,
    pub der: Vec<u8>,
    pub pem: String,
}

impl Leaf {
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        sign(&self.key, message)
    }
}

/// A certificate authority: a self-signed root and the intermediate that issues.
pub struct Authority {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
    intermediate_spki: Vec<u8>,
}

impl Authority {
    fn new(name: &str, leaf_usage: Option<ExtendedKeyUsagePurpose>) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "haul.test");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} root"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before =
            time::OffsetDateTime::from_unix_timestamp(now() - 86_400 * 365).unwrap();
        params.not_after =
            time::OffsetDateTime::from_unix_timestamp(now() + 86_400 * 3650).unwrap();
        let root =
            CertifiedIssuer::self_signed(params.clone(), KeyPair::generate().unwrap()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "haul.test");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} intermediate"));
        if let Some(usage) = leaf_usage {
            params.extended_key_usages = vec![usage];
        }
        let key = KeyPair::generate().unwrap();
        let intermediate_spki = key.subject_public_key_info();
        let intermediate = CertifiedIssuer::signed_by(params, key, &root).unwrap();
        Authority {
            root,
            intermediate,
            intermediate_spki,
        }
    }

    /// The chain as a trusted root lists it: the issuing certificate first.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        vec![self.intermediate.der().to_vec(), self.root.der().to_vec()]
    }

    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.intermediate.pem(), self.root.pem())
    }
}

/// One entry as a log returns it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub index: u64,
    pub log_id: Vec<u8>,
    pub integrated_time: Option<i64>,
    pub promise: Option<Vec<u8>>,
    pub root_hash: [u8; 32],
    pub tree_size: u64,
    pub hashes: Vec<[u8; 32]>,
    pub checkpoint: String,
    pub body: Vec<u8>,
}

impl Logged {
    /// The entry as a sigstore bundle holds it (`tlogEntries[]`).
    pub fn bundle_entry(&self, kind: &str, version: &str) -> serde_json::Value {
        let mut entry = json!({
            "logIndex": self.index.to_string(),
            "logId": {"keyId": b64(&self.log_id)},
            "kindVersion": {"kind": kind, "version": version},
            "inclusionProof": {
                "logIndex": self.index.to_string(),
                "rootHash": b64(&self.root_hash),
                "treeSize": self.tree_size.to_string(),
                "hashes": self.hashes.iter().map(|h| b64(h)).collect::<Vec<_>>(),
                "checkpoint": {"envelope": self.checkpoint},
            },
            "canonicalizedBody": b64(&self.body),
        });
        if let Some(time) = self.integrated_time {
            entry["integratedTime"] = time.to_string().into();
        }
        if let Some(promise) = &self.promise {
            entry["inclusionPromise"] = json!({"signedEntryTimestamp": b64(promise)});
        }
        entry
    }

    /// cosign's `dev.sigstore.cosign/bundle` annotation.
    pub fn cosign_annotation(&self) -> String {
        json!({
            "SignedEntryTimestamp": b64(self.promise.as_ref().unwrap()),
            "Payload": {
                "body": b64(&self.body),
                "integratedTime": self.integrated_time.unwrap(),
                "logIndex": self.index,
                "logID": hex::encode(&self.log_id),
            }
        })
        .to_string()
    }
}

fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(entry);
    hasher.finalize().into()
}

fn node_hash(left: &[u8], right: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// RFC 6962 §2.1: the split is the largest power of two below the count.
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn tree_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&tree_root(&leaves[..k]), &tree_root(&leaves[k..]))
        }
    }
}

fn tree_path(leaves: &[[u8; 32]], index: usize) -> Vec<[u8; 32]> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let k = split(n);
    if index < k {
        let mut path = tree_path(&leaves[..k], index);
        path.push(tree_root(&leaves[k..]));
        path
    } else {
        let mut path = tree_path(&leaves[k..], index - k);
        path.push(tree_root(&leaves[..k]));
        path
    }
}

/// An image to push beside the signed one: its manifest and blobs.
pub struct SignatureImage {
    pub manifest: Vec<u8>,
    pub blobs: Vec<Vec<u8>>,
}

impl SignatureImage {
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(sha256(&self.manifest)))
    }
}

/// Ways to make a log entry wrong, each a case the verifiers must refuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tamper {
    /// One hash of the inclusion proof changed.
    pub proof: bool,
    /// The checkpoint signed by a key the trusted root does not hold.
    pub checkpoint_key: bool,
}

pub struct Sigstore {
    pub dir: tempfile::TempDir,
    pub fulcio: Authority,
    ct: EcdsaKeyPair,
    ct_spki: Vec<u8>,
    rekor: EcdsaKeyPair,
    rekor_spki: Vec<u8>,
    rekor2: Ed25519KeyPair,
    rekor2_raw: Vec<u8>,
    rekor2_spki: Vec<u8>,
    tsa: Authority,
    tsa_leaf: CertifiedIssuer<'static, KeyPair>,
    tsa_key: EcdsaKeyPair,
    /// An unrelated key, to sign checkpoints the root does not trust.
    stranger: EcdsaKeyPair,
    leaves: RefCell<Vec<[u8; 32]>>,
    leaves2: RefCell<Vec<[u8; 32]>>,
    serial: RefCell<u64>,
}

impl Sigstore {
    pub fn new() -> Sigstore {
        let dir = tempfile::tempdir().unwrap();
        let key = |spki: &mut Vec<u8>| {
            let pair = KeyPair::generate().unwrap();
            *spki = pair.subject_public_key_info();
            ecdsa(&pair)
        };
        let (mut ct_spki, mut rekor_spki, mut none) = (Vec::new(), Vec::new(), Vec::new());
        let ct = key(&mut ct_spki);
        let rekor = key(&mut rekor_spki);
        let stranger = key(&mut none);
        let rekor2 = Ed25519KeyPair::generate().unwrap();
        let rekor2_spki = rekor2.public_key().as_der().unwrap().as_ref().to_vec();
        let rekor2_raw = rekor2.public_key().as_ref().to_vec();
        let tsa = Authority::new("timestamps", None);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "haul.test timestamp authority");
        // RFC 3161 §2.3: the one extended key usage, timeStamping, and critical.
        let mut usage =
            CustomExtension::from_oid_content(&[2, 5, 29, 37], seq(&[oid("1.3.6.1.5.5.7.3.8")]));
        usage.set_criticality(true);
        params.custom_extensions = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = time::OffsetDateTime::from_unix_timestamp(now() - 86_400).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(now() + 86_400 * 365).unwrap();
        let tsa_pair = KeyPair::generate().unwrap();
        let tsa_key = ecdsa(&tsa_pair);
        let tsa_leaf = CertifiedIssuer::signed_by(params, tsa_pair, &tsa.intermediate).unwrap();
        let sigstore = Sigstore {
            dir,
            fulcio: Authority::new("fulcio", Some(ExtendedKeyUsagePurpose::CodeSigning)),
            ct,
            ct_spki,
            rekor,
            rekor_spki,
            rekor2,
            rekor2_raw,
            rekor2_spki,
            tsa,
            tsa_leaf,
            tsa_key,
            stranger,
            // Entry 0 is a stranger's: sigstore-go (cosign 2.5) refuses a log index of 0.
            leaves: RefCell::new(vec![leaf_hash(b"genesis")]),
            leaves2: RefCell::new(vec![leaf_hash(b"genesis")]),
            serial: RefCell::new(1000),
        };
        std::fs::write(
            sigstore.trusted_root(),
            sigstore.trusted_root_json().to_string(),
        )
        .unwrap();
        std::fs::write(
            sigstore.dir.path().join("fulcio.pem"),
            sigstore.fulcio.chain_pem(),
        )
        .unwrap();
        std::fs::write(
            sigstore.dir.path().join("rekor.pub"),
            pem("PUBLIC KEY", &sigstore.rekor_spki),
        )
        .unwrap();
        std::fs::write(
            sigstore.dir.path().join("ctfe.pub"),
            pem("PUBLIC KEY", &sigstore.ct_spki),
        )
        .unwrap();
        sigstore
    }

    /// `trusted_root.json`.
    pub fn trusted_root(&self) -> PathBuf {
        self.dir.path().join("trusted_root.json")
    }

    pub fn trusted_root_bytes(&self) -> Vec<u8> {
        std::fs::read(self.trusted_root()).unwrap()
    }

    pub fn trusted_root_str(&self) -> String {
        self.trusted_root().display().to_string()
    }

    /// What cosign 2.5's `verify` of a `.sig` signature reads instead of a trusted root (it
    /// ignores `--trusted-root` there): the Fulcio chain, the Rekor key, the CT log key.
    pub fn cosign_env(&self) -> Vec<(&'static str, String)> {
        let path = |name: &str| self.dir.path().join(name).display().to_string();
        vec![
            ("SIGSTORE_ROOT_FILE", path("fulcio.pem")),
            ("SIGSTORE_REKOR_PUBLIC_KEY", path("rekor.pub")),
            ("SIGSTORE_CT_LOG_PUBLIC_KEY_FILE", path("ctfe.pub")),
        ]
    }

    fn rekor2_id(&self) -> Vec<u8> {
        let mut input = format!("{REKOR2_ORIGIN}\n").into_bytes();
        input.push(1);
        input.extend(&self.rekor2_raw);
        sha256(&input).to_vec()
    }

    fn trusted_root_json(&self) -> serde_json::Value {
        let since = "2020-01-01T00:00:00Z";
        let log = |url: &str, spki: &[u8], details: &str, id: &[u8]| {
            json!({
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": b64(spki), "keyDetails": details, "validFor": {"start": since}},
                "logId": {"keyId": b64(id)},
            })
        };
        let authority = |uri: &str, chain: Vec<Vec<u8>>| {
            json!({
                "subject": {"organization": "haul.test", "commonName": uri},
                "uri": uri,
                "certChain": {"certificates": chain.iter().map(|c| json!({"rawBytes": b64(c)})).collect::<Vec<_>>()},
                "validFor": {"start": since},
            })
        };
        let mut tsa_chain = vec![self.tsa_leaf.der().to_vec()];
        tsa_chain.extend(self.tsa.chain_der());
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [
                log(REKOR_URL, &self.rekor_spki, "PKIX_ECDSA_P256_SHA_256", &sha256(&self.rekor_spki)),
                log(REKOR2_URL, &self.rekor2_spki, "PKIX_ED25519", &self.rekor2_id()),
            ],
            "certificateAuthorities": [authority("https://fulcio.haul.test", self.fulcio.chain_der())],
            "ctlogs": [log("https://ct.haul.test", &self.ct_spki, "PKIX_ECDSA_P256_SHA_256", &sha256(&self.ct_spki))],
            "timestampAuthorities": [authority("https://tsa.haul.test", tsa_chain)],
        })
    }

    /// A certificate for `identity`, valid from `from` for `seconds`, issued by `by` (this
    /// Fulcio, or another CA), with Fulcio's issuer extensions and an SCT by the CT log.
    pub fn issue_by(&self, by: &Authority, identity: &Identity, from: i64, seconds: i64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let signer = ecdsa(&key);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![match &identity.san {
            San::Email(email) => SanType::Rfc822Name(email.as_str().try_into().unwrap()),
            San::Uri(uri) => SanType::URI(uri.as_str().try_into().unwrap()),
        }];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        params.not_before = time::OffsetDateTime::from_unix_timestamp(from).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(from + seconds).unwrap();
        let serial = {
            let mut serial = self.serial.borrow_mut();
            *serial += 1;
            *serial
        };
        params.serial_number = Some(serial.into());
        params.custom_extensions = vec![
            // Fulcio's issuer, v1 (the raw string) and v2 (a DER UTF8String).
            CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 1],
                identity.issuer.as_bytes().to_vec(),
            ),
            CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 57264, 1, 8],
                tlv(0x0c, identity.issuer.as_bytes()),
            ),
        ];
        // The precertificate's TBS is the certificate's without the SCT list: issue it
        // first, have the CT log sign it, then issue the same TBS with the SCT appended.
        let precertificate = params.signed_by(&key, &by.intermediate).unwrap();
        let tbs = first_element(precertificate.der());
        let timestamp = (from as u64) * 1000;
        let mut signed = vec![0u8, 0u8];
        signed.extend(timestamp.to_be_bytes());
        signed.extend(1u16.to_be_bytes());
        signed.extend(sha256(&by.intermediate_spki));
        signed.extend(&(tbs.len() as u32).to_be_bytes()[1..]);
        signed.extend(&tbs);
        signed.extend(0u16.to_be_bytes());
        let signature = sign(&self.ct, &signed);
        let mut sct = vec![0u8];
        sct.extend(sha256(&self.ct_spki));
        sct.extend(timestamp.to_be_bytes());
        sct.extend(0u16.to_be_bytes());
        sct.extend([4u8, 3u8]); // SHA-256, ECDSA
        sct.extend((signature.len() as u16).to_be_bytes());
        sct.extend(&signature);
        let mut list = (sct.len() as u16).to_be_bytes().to_vec();
        list.extend(&sct);
        let mut with_length = (list.len() as u16).to_be_bytes().to_vec();
        with_length.extend(&list);
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 4, 1, 11129, 2, 4, 2],
                tlv(0x04, &with_length),
            ));
        let certificate = params.signed_by(&key, &by.intermediate).unwrap();
        Leaf {
            key: signer,
            der: certificate.der().to_vec(),
            pem: certificate.pem(),
        }
    }

    /// A certificate from this Fulcio, valid for 10 minutes from a minute ago.
    pub fn issue(&self, identity: &Identity) -> Leaf {
        self.issue_by(&self.fulcio, identity, now() - 60, 600)
    }

    /// Another certificate authority, not in the trusted root.
    pub fn stranger_authority(&self) -> Authority {
        Authority::new("stranger", Some(ExtendedKeyUsagePurpose::CodeSigning))
    }

    /// Appends `body` to the Rekor v1 log at `time`: its promise (SET), inclusion proof and
    /// checkpoint.
    pub fn log(&self, body: Vec<u8>, time: i64, tamper: Tamper) -> Logged {
        let mut leaves = self.leaves.borrow_mut();
        leaves.push(leaf_hash(&body));
        let index = leaves.len() as u64 - 1;
        let log_id = sha256(&self.rekor_spki).to_vec();
        let set_payload = format!(
            "{{\"body\":\"{}\",\"integratedTime\":{time},\"logID\":\"{}\",\"logIndex\":{index}}}",
            b64(&body),
            hex::encode(&log_id)
        );
        let promise = sign(&self.rekor, set_payload.as_bytes());
        let root_hash = tree_root(&leaves);
        let mut hashes = tree_path(&leaves, index as usize);
        if tamper.proof {
            hashes[0][0] ^= 1;
        }
        let text = format!("{REKOR_ORIGIN}\n{}\n{}\n", leaves.len(), b64(&root_hash));
        let (key, spki) = if tamper.checkpoint_key {
            (&self.stranger, None)
        } else {
            (&self.rekor, Some(&self.rekor_spki))
        };
        let hint: Vec<u8> = match spki {
            Some(spki) => sha256(spki)[..4].to_vec(),
            // A stranger claiming to be the log: the log's hint, its own signature.
            None => sha256(&self.rekor_spki)[..4].to_vec(),
        };
        let mut signature = hint;
        signature.extend(sign(key, text.as_bytes()));
        let checkpoint = format!("{text}\n\u{2014} rekor.haul.test {}\n", b64(&signature));
        Logged {
            index,
            log_id,
            integrated_time: Some(time),
            promise: Some(promise),
            root_hash,
            tree_size: leaves.len() as u64,
            hashes,
            checkpoint,
            body,
        }
    }

    /// Appends `body` to the Rekor v2 log: no time and no promise, an Ed25519 checkpoint.
    pub fn log_v2(&self, body: Vec<u8>) -> Logged {
        let mut leaves = self.leaves2.borrow_mut();
        leaves.push(leaf_hash(&body));
        let index = leaves.len() as u64 - 1;
        let root_hash = tree_root(&leaves);
        let hashes = tree_path(&leaves, index as usize);
        let text = format!("{REKOR2_ORIGIN}\n{}\n{}\n", leaves.len(), b64(&root_hash));
        let mut signature = self.rekor2_id()[..4].to_vec();
        signature.extend(self.rekor2.sign(text.as_bytes()).as_ref());
        let checkpoint = format!("{text}\n\u{2014} {REKOR2_ORIGIN} {}\n", b64(&signature));
        Logged {
            index,
            log_id: self.rekor2_id(),
            integrated_time: None,
            promise: None,
            root_hash,
            tree_size: leaves.len() as u64,
            hashes,
            checkpoint,
            body,
        }
    }

    /// An RFC 3161 response: the timestamp authority saw `signature` at `time`.
    pub fn timestamp(&self, signature: &[u8], time: i64) -> Vec<u8> {
        let when = time::OffsetDateTime::from_unix_timestamp(time).unwrap();
        let generalized = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}Z",
            when.year(),
            u8::from(when.month()),
            when.day(),
            when.hour(),
            when.minute(),
            when.second()
        );
        let sha256_id = seq(&[oid("2.16.840.1.101.3.4.2.1"), vec![0x05, 0x00]]);
        let tst_info = seq(&[
            integer(1),
            oid("1.3.6.1.4.1.57264.2"),
            seq(&[sha256_id.clone(), tlv(0x04, &sha256(signature))]),
            integer(time as u64),
            tlv(0x18, generalized.as_bytes()),
        ]);
        let attributes = [
            seq(&[
                oid("1.2.840.113549.1.9.3"),
                tlv(0x31, &oid("1.2.840.113549.1.9.16.1.4")),
            ]),
            seq(&[
                oid("1.2.840.113549.1.9.4"),
                tlv(0x31, &tlv(0x04, &sha256(&tst_info))),
            ]),
        ]
        .concat();
        let signed_attributes = sign(&self.tsa_key, &tlv(0x31, &attributes));
        let signer_info = seq(&[
            integer(1),
            issuer_and_serial(self.tsa_leaf.der()),
            sha256_id.clone(),
            tlv(0xa0, &attributes),
            seq(&[oid("1.2.840.10045.4.3.2")]),
            tlv(0x04, &signed_attributes),
        ]);
        let signed_data = seq(&[
            integer(3),
            tlv(0x31, &sha256_id),
            seq(&[
                oid("1.2.840.113549.1.9.16.1.4"),
                tlv(0xa0, &tlv(0x04, &tst_info)),
            ]),
            tlv(0xa0, self.tsa_leaf.der()),
            tlv(0x31, &signer_info),
        ]);
        seq(&[
            seq(&[integer(0)]),
            seq(&[oid("1.2.840.113549.1.7.2"), tlv(0xa0, &signed_data)]),
        ])
    }

    /// cosign's simple-signing payload for `digest` in `repository`.
    pub fn simple_signing(repository: &str, digest: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "critical": {
                "identity": {"docker-reference": repository},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature"
            },
            "optional": null
        }))
        .unwrap()
    }

    /// A hashedrekord 0.0.1 body for `signature` over an artifact of SHA-256 `digest`.
    pub fn hashedrekord(digest: &[u8; 32], signature: &[u8], leaf_pem: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(digest)}},
                "signature": {"content": b64(signature), "publicKey": {"content": b64(leaf_pem.as_bytes())}},
            }
        }))
        .unwrap()
    }

    /// cosign's `.sig` image for an image of `repository` (`host/name`), signed by `leaf` over
    /// a payload naming `named` (the image's digest, or another), logged at `time`.
    pub fn cosign_signature(
        &self,
        repository: &str,
        named: &str,
        leaf: &Leaf,
        time: i64,
    ) -> SignatureImage {
        let payload = Self::simple_signing(repository, named);
        let signature = leaf.sign(&payload);
        let body = Self::hashedrekord(&sha256(&payload), &signature, &leaf.pem);
        let logged = self.log(body, time, Tamper::default());
        let payload_digest = format!("sha256:{}", hex::encode(sha256(&payload)));
        let config = serde_json::to_vec(&json!({
            "architecture": "", "os": "", "config": {},
            "rootfs": {"type": "layers", "diff_ids": [payload_digest]}
        }))
        .unwrap();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": config.len(),
                "digest": format!("sha256:{}", hex::encode(sha256(&config))),
            },
            "layers": [{
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": payload.len(),
                "digest": payload_digest,
                "annotations": {
                    "dev.cosignproject.cosign/signature": b64(&signature),
                    "dev.sigstore.cosign/certificate": leaf.pem,
                    "dev.sigstore.cosign/chain": self.fulcio.chain_pem(),
                    "dev.sigstore.cosign/bundle": logged.cosign_annotation(),
                }
            }]
        });
        SignatureImage {
            manifest: serde_json::to_vec(&manifest).unwrap(),
            blobs: vec![payload, config],
        }
    }

    /// A sigstore bundle as an OCI 1.1 referrer of the image `subject` (its manifest's media
    /// type, digest and size), as `cosign attest --new-bundle-format` attaches it.
    pub fn bundle_referrer(
        bundle: &str,
        predicate_type: &str,
        subject: (&str, &str, usize),
    ) -> SignatureImage {
        let media_type = "application/vnd.dev.sigstore.bundle.v0.3+json";
        let config = b"{}".to_vec();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": media_type,
            "config": {
                "mediaType": "application/vnd.oci.empty.v1+json",
                "size": 2,
                "digest": format!("sha256:{}", hex::encode(sha256(&config))),
            },
            "layers": [{
                "mediaType": media_type,
                "size": bundle.len(),
                "digest": format!("sha256:{}", hex::encode(sha256(bundle.as_bytes()))),
            }],
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": predicate_type,
            },
            "subject": {"mediaType": subject.0, "digest": subject.1, "size": subject.2},
        });
        SignatureImage {
            manifest: serde_json::to_vec(&manifest).unwrap(),
            blobs: vec![bundle.as_bytes().to_vec(), config],
        }
    }

    /// A sigstore bundle v0.3 for a file of `bytes`: a message signature by `leaf`, logged in
    /// Rekor v1 at `time` (with `tamper`).
    pub fn blob_bundle(&self, bytes: &[u8], leaf: &Leaf, time: i64, tamper: Tamper) -> String {
        let digest = sha256(bytes);
        let signature = leaf.sign(bytes);
        let body = Self::hashedrekord(&digest, &signature, &leaf.pem);
        let logged = self.log(body, time, tamper);
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(&leaf.der)},
                "tlogEntries": [logged.bundle_entry("hashedrekord", "0.0.1")],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&digest)},
                "signature": b64(&signature),
            }
        })
        .to_string()
    }

    /// A sigstore bundle v0.3 for a file of `bytes`, signed with a key (no certificate: the
    /// log entry records the key), logged in Rekor v1. Returns the bundle and the key's PEM.
    pub fn keyed_blob_bundle(&self, bytes: &[u8]) -> (String, String) {
        let pair = KeyPair::generate().unwrap();
        let key = ecdsa(&pair);
        let public = pem("PUBLIC KEY", &pair.subject_public_key_info());
        let digest = sha256(bytes);
        let signature = sign(&key, bytes);
        let body = Self::hashedrekord(&digest, &signature, &public);
        let logged = self.log(body, now(), Tamper::default());
        let bundle = json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "publicKey": {"hint": b64(&sha256(&pair.subject_public_key_info()))},
                "tlogEntries": [logged.bundle_entry("hashedrekord", "0.0.1")],
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&digest)},
                "signature": b64(&signature),
            }
        })
        .to_string();
        (bundle, public)
    }

    /// A sigstore bundle v0.3 for a file of `bytes` logged in Rekor v2, placed in time by a
    /// timestamp of `timestamped` (the signature itself, or other bytes).
    pub fn blob_bundle_v2(&self, bytes: &[u8], leaf: &Leaf, timestamped: Option<&[u8]>) -> String {
        let digest = sha256(bytes);
        let signature = leaf.sign(bytes);
        let body = serde_json::to_vec(&json!({
            "apiVersion": "0.0.2",
            "kind": "hashedrekord",
            "spec": {"hashedRekordV002": {
                "data": {"algorithm": "SHA2_256", "digest": b64(&digest)},
                "signature": {
                    "content": b64(&signature),
                    "verifier": {"keyDetails": "PKIX_ECDSA_P256_SHA_256", "x509Certificate": {"rawBytes": b64(&leaf.der)}},
                },
            }}
        }))
        .unwrap();
        let logged = self.log_v2(body);
        let token = self.timestamp(timestamped.unwrap_or(&signature), now());
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(&leaf.der)},
                "tlogEntries": [logged.bundle_entry("hashedrekord", "0.0.2")],
                "timestampVerificationData": {"rfc3161Timestamps": [{"signedTimestamp": b64(&token)}]},
            },
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(&digest)},
                "signature": b64(&signature),
            }
        })
        .to_string()
    }

    /// A sigstore bundle v0.3 holding a DSSE envelope: an in-toto statement of
    /// `predicate_type` about `subject` (sha256 hex), by `leaf`, logged in Rekor v1 (dsse
    /// 0.0.1), as `cosign attest --new-bundle-format` and GitHub's attest action make.
    pub fn attestation_bundle(&self, subject: &str, predicate_type: &str, leaf: &Leaf) -> String {
        let statement = serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "artifact", "digest": {"sha256": subject}}],
            "predicateType": predicate_type,
            "predicate": {"builder": {"id": "https://haul.test/builder"}},
        }))
        .unwrap();
        let payload_type = "application/vnd.in-toto+json";
        let mut pae = format!(
            "DSSEv1 {} {payload_type} {} ",
            payload_type.len(),
            statement.len()
        )
        .into_bytes();
        pae.extend(&statement);
        let signature = leaf.sign(&pae);
        let envelope = json!({
            "payload": b64(&statement),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(&signature)}],
        });
        let body = serde_json::to_vec(&json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode(sha256(envelope.to_string().as_bytes()))},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(sha256(&statement))},
                "signatures": [{"signature": b64(&signature), "verifier": b64(leaf.pem.as_bytes())}],
            }
        }))
        .unwrap();
        let logged = self.log(body, now(), Tamper::default());
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(&leaf.der)},
                "tlogEntries": [logged.bundle_entry("dsse", "0.0.1")],
            },
            "dsseEnvelope": envelope,
        })
        .to_string()
    }
}
