//! Bundle archives: reading a tar (optionally gzip) into verified members,
//! and writing one from members.
//!
//! Reading is defensive: every member has a size limit (checked while
//! reading, so a gzip bomb stops at the limit), unknown or duplicate members
//! are refused, and the signature and hashes are checked before anything is
//! parsed beyond the manifest.

use crate::manifest::{self, BundleKind, FORMAT, Manifest, member};
use crate::sign::{BundleSigner, Keyring, SignatureError};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;

/// Size limits for a bundle and its members, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The compressed or plain archive as received.
    pub archive: u64,
    /// `manifest.json` and `manifest.sig`.
    pub manifest: u64,
    /// Schema, policies, links, entities, routes: each.
    pub member: u64,
    /// `users.jsonl`.
    pub users: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            archive: 1 << 30,
            manifest: 1 << 20,
            member: 64 << 20,
            users: 2 << 30,
        }
    }
}

impl Limits {
    fn for_member(&self, name: &str) -> u64 {
        match name {
            member::MANIFEST | member::SIGNATURE => self.manifest,
            member::USERS => self.users,
            _ => self.member,
        }
    }
}

/// How signatures are checked when a bundle is opened.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The manifest must carry a signature by a key in this keyring.
    Keyring(&'a Keyring),
    /// Development only: unsigned bundles are accepted (member hashes are
    /// still checked). Hosts must say loudly that they run like this.
    Dev,
}

/// Why a bundle was refused. Each variant is one distinct failure, so
/// callers (and tests) can tell them apart without reading messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The bytes are not a tar archive (plain or gzip).
    #[error("not a bundle archive: {0}")]
    NotAnArchive(String),
    /// The archive as received is over its limit.
    #[error("bundle is larger than the {limit}-byte limit")]
    ArchiveTooLarge {
        /// The limit.
        limit: u64,
    },
    /// A member is over its size limit.
    #[error("member {name} is larger than its {limit}-byte limit")]
    MemberTooLarge {
        /// Member name.
        name: String,
        /// The limit.
        limit: u64,
    },
    /// The same member twice.
    #[error("member {0} appears twice")]
    DuplicateMember(String),
    /// A member the format does not know, a directory, a link, or a path.
    #[error("unexpected member {0:?}")]
    UnexpectedMember(String),
    /// A required member is absent.
    #[error("missing member {0}")]
    MissingMember(String),
    /// `manifest.json` or `manifest.sig` is not where the format puts it
    /// (the first member and the one right after it): the manifest is
    /// authenticated before any content member is read.
    #[error("member {0} is out of place: manifest.json comes first, manifest.sig next")]
    MisplacedMember(String),
    /// `manifest.json` is not valid.
    #[error("manifest.json: {0}")]
    Manifest(String),
    /// `manifest.json` names another format.
    #[error("manifest.json: unsupported format {0:?} (expected {FORMAT})")]
    UnsupportedFormat(String),
    /// Signatures are required and `manifest.sig` is absent.
    #[error("bundle is not signed (manifest.sig missing) and the host is not in dev mode")]
    Unsigned,
    /// The signature was refused.
    #[error("manifest.sig: {0}")]
    Signature(#[from] SignatureError),
    /// A member's bytes do not match the manifest's hash.
    #[error("member {0} does not match its sha256 in the manifest")]
    HashMismatch(String),
    /// A member present in the archive has no hash in the manifest, or the
    /// manifest lists a member the archive lacks.
    #[error("member {0} is not covered by the manifest")]
    NotCovered(String),
    /// The revision is not newer than the one held.
    #[error("revision {offered} is not newer than the held revision {held} (rollback refused)")]
    Rollback {
        /// Revision held.
        held: u64,
        /// Revision offered.
        offered: u64,
    },
    /// A delta whose base is not the held revision.
    #[error("delta applies on revision {base}, but revision {held} is held")]
    DeltaBase {
        /// Revision held (`None`: nothing held).
        held: u64,
        /// The delta's base.
        base: u64,
    },
    /// A delta offered with nothing to apply it on, or a delta without base.
    #[error("delta {revision} cannot be applied: {why}")]
    DeltaWithoutBase {
        /// The delta's revision.
        revision: u64,
        /// What is missing.
        why: &'static str,
    },
    /// A bundle of another realm.
    #[error("bundle is for realm {offered:?}, but realm {held:?} is held")]
    RealmMismatch {
        /// Realm held.
        held: String,
        /// Realm offered.
        offered: String,
    },
    /// A member's content is invalid (parse or validation error), with the
    /// member name and, where known, line and column.
    #[error("{member}{}: {message}", position.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Invalid {
        /// Member (file) name.
        member: String,
        /// 1-based line and column, when known.
        position: Option<(usize, usize)>,
        /// What is wrong.
        message: String,
    },
}

impl BundleError {
    /// An invalid-content error for `member` at an optional position.
    pub fn invalid(
        member: &str,
        position: Option<(usize, usize)>,
        message: impl Into<String>,
    ) -> Self {
        BundleError::Invalid {
            member: member.to_owned(),
            position,
            message: message.into(),
        }
    }

    /// Stable machine-readable kind, used in tagged answers and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BundleError::NotAnArchive(_) => "not_an_archive",
            BundleError::ArchiveTooLarge { .. } => "archive_too_large",
            BundleError::MemberTooLarge { .. } => "member_too_large",
            BundleError::DuplicateMember(_) => "duplicate_member",
            BundleError::UnexpectedMember(_) => "unexpected_member",
            BundleError::MissingMember(_) => "missing_member",
            BundleError::MisplacedMember(_) => "misplaced_member",
            BundleError::Manifest(_) => "bad_manifest",
            BundleError::UnsupportedFormat(_) => "unsupported_format",
            BundleError::Unsigned => "unsigned",
            BundleError::Signature(SignatureError::UnknownKid(_)) => "unknown_kid",
            BundleError::Signature(SignatureError::Invalid(_)) => "bad_signature",
            BundleError::Signature(SignatureError::NotForRealm { .. }) => "key_not_for_realm",
            BundleError::Signature(_) => "malformed_signature",
            BundleError::HashMismatch(_) => "hash_mismatch",
            BundleError::NotCovered(_) => "not_covered",
            BundleError::Rollback { .. } => "rollback",
            BundleError::DeltaBase { .. } => "delta_base_mismatch",
            BundleError::DeltaWithoutBase { .. } => "delta_without_base",
            BundleError::RealmMismatch { .. } => "realm_mismatch",
            BundleError::Invalid { .. } => "invalid_member",
        }
    }
}

/// A bundle whose archive has been read and whose signature and hashes have
/// been checked; its members are still raw bytes.
#[derive(Debug, Clone)]
pub struct Bundle<'a> {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The key id that signed it (`None` for an unsigned dev bundle).
    pub signed_by: Option<String>,
    /// Member bytes: borrowed from a plain archive, owned from a gzip'd one.
    members: BTreeMap<String, Cow<'a, [u8]>>,
}

impl<'a> Bundle<'a> {
    /// Read and verify a bundle archive.
    pub fn open(
        bytes: &'a [u8],
        trust: Trust<'_>,
        limits: &Limits,
    ) -> Result<Bundle<'a>, BundleError> {
        if bytes.len() as u64 > limits.archive {
            return Err(BundleError::ArchiveTooLarge {
                limit: limits.archive,
            });
        }
        let (manifest, signed_by, members) = read_archive(bytes, trust, limits)?;
        Ok(Bundle {
            manifest,
            signed_by,
            members,
        })
    }

    /// The same bundle owning its members (copied out of the archive if
    /// they were borrowed), to outlive the archive's bytes.
    pub fn into_owned(self) -> Bundle<'static> {
        Bundle {
            manifest: self.manifest,
            signed_by: self.signed_by,
            members: self
                .members
                .into_iter()
                .map(|(name, bytes)| (name, Cow::Owned(bytes.into_owned())))
                .collect(),
        }
    }

    /// A member's bytes, if present.
    pub fn member(&self, name: &str) -> Option<&[u8]> {
        self.members.get(name).map(|b| &**b)
    }

    /// Names of the content members present.
    pub fn member_names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| BundleError::Manifest(format!("{}:{}: {e}", e.line(), e.column())))?;
    if let Some(format) = value.get("format").and_then(|f| f.as_str())
        && format != FORMAT
    {
        return Err(BundleError::UnsupportedFormat(format.to_owned()));
    }
    let manifest: Manifest =
        serde_json::from_value(value).map_err(|e| BundleError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(BundleError::UnsupportedFormat(manifest.format));
    }
    match (manifest.kind, manifest.base_revision) {
        (BundleKind::Delta, None) => {
            return Err(BundleError::DeltaWithoutBase {
                revision: manifest.revision,
                why: "manifest has no base_revision",
            });
        }
        (BundleKind::Delta, Some(base)) if base >= manifest.revision => {
            return Err(BundleError::Manifest(format!(
                "delta revision {} must be greater than its base {base}",
                manifest.revision
            )));
        }
        (BundleKind::Snapshot, Some(_)) => {
            return Err(BundleError::Manifest(
                "a snapshot has no base_revision".into(),
            ));
        }
        _ => {}
    }
    Ok(manifest)
}

/// Check the manifest's signature (as `trust` requires) and parse it.
fn authenticate(
    manifest_bytes: Option<&[u8]>,
    signature: Option<&[u8]>,
    trust: Trust<'_>,
) -> Result<(Manifest, Option<String>), BundleError> {
    let manifest_bytes =
        manifest_bytes.ok_or_else(|| BundleError::MissingMember(member::MANIFEST.into()))?;
    let signed_by = match (trust, signature) {
        (Trust::Keyring(ring), Some(sig)) => {
            let sig = std::str::from_utf8(sig)
                .map_err(|_| SignatureError::Malformed("not UTF-8".into()))?;
            Some(ring.verify(manifest_bytes, sig)?)
        }
        (Trust::Keyring(_), None) => return Err(BundleError::Unsigned),
        (Trust::Dev, _) => None,
    };
    let manifest = parse_manifest(manifest_bytes)?;
    // A key bound to realms signs bundles of those realms only.
    if let (Trust::Keyring(ring), Some(kid)) = (trust, &signed_by) {
        ring.may_sign(kid, &manifest.realm)?;
    }
    Ok((manifest, signed_by))
}

type Members<'a> = BTreeMap<String, Cow<'a, [u8]>>;

/// Read a tar (or gzip'd tar) archive: the manifest and its signature
/// first, checked before any content member is read; then each content
/// member, refused unless the manifest covers it, read under its size
/// limit and checked against its hash.
fn read_archive<'a>(
    bytes: &'a [u8],
    trust: Trust<'_>,
    limits: &Limits,
) -> Result<(Manifest, Option<String>, Members<'a>), BundleError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_tar(
            tar::Archive::new(flate2::read::GzDecoder::new(bytes)).entries(),
            None,
            trust,
            limits,
        )
    } else {
        // A plain archive is in memory already: members are borrowed from it
        // (no copy, no growing buffer), and skipped members seek.
        read_tar(
            tar::Archive::new(std::io::Cursor::new(bytes)).entries_with_seek(),
            Some(bytes),
            trust,
            limits,
        )
    }
}

/// One member's bytes, under `limit`. `plain` is the whole archive when
/// its bytes are the reader's, so member data is sliced out rather than
/// read.
fn member_bytes<'a, R: Read>(
    entry: tar::Entry<'_, R>,
    name: &str,
    size: u64,
    plain: Option<&'a [u8]>,
    limit: u64,
) -> Result<Cow<'a, [u8]>, BundleError> {
    let not_archive = |e: std::io::Error| BundleError::NotAnArchive(e.to_string());
    let too_large = || BundleError::MemberTooLarge {
        name: name.to_owned(),
        limit,
    };
    let size = usize::try_from(size).map_err(|_| too_large())?;
    match plain {
        Some(all) => usize::try_from(entry.raw_file_position())
            .ok()
            .and_then(|at| all.get(at..at.checked_add(size)?))
            .map(Cow::Borrowed)
            .ok_or_else(|| {
                BundleError::NotAnArchive(format!("{name} runs past the end of the archive"))
            }),
        None => {
            let mut buf = Vec::new();
            buf.try_reserve_exact(size).map_err(|_| too_large())?;
            entry
                .take(limit + 1)
                .read_to_end(&mut buf)
                .map_err(not_archive)?;
            if buf.len() as u64 > limit {
                return Err(too_large());
            }
            Ok(Cow::Owned(buf))
        }
    }
}

/// The members of an archive, authenticated as [`read_archive`] says.
fn read_tar<'a, 'r, R: Read + 'r>(
    entries: std::io::Result<tar::Entries<'r, R>>,
    plain: Option<&'a [u8]>,
    trust: Trust<'_>,
    limits: &Limits,
) -> Result<(Manifest, Option<String>, Members<'a>), BundleError> {
    let not_archive = |e: std::io::Error| BundleError::NotAnArchive(e.to_string());
    let mut manifest_bytes: Option<Cow<'a, [u8]>> = None;
    let mut signature: Option<Cow<'a, [u8]>> = None;
    let mut authenticated: Option<(Manifest, Option<String>)> = None;
    let mut out = BTreeMap::new();
    let mut seen = 0usize;
    for entry in entries.map_err(not_archive)? {
        let entry = entry.map_err(not_archive)?;
        let path = entry.path().map_err(not_archive)?;
        let name = path.to_string_lossy().trim_start_matches("./").to_owned();
        let kind = entry.header().entry_type();
        if kind.is_dir() && (name.is_empty() || name == ".") {
            continue;
        }
        seen += 1;
        let known = name == member::MANIFEST
            || name == member::SIGNATURE
            || member::CONTENT.contains(&name.as_str());
        if !kind.is_file() || !known {
            return Err(BundleError::UnexpectedMember(name));
        }
        let limit = limits.for_member(&name);
        let size = entry.header().size().map_err(not_archive)?;
        if size > limit {
            return Err(BundleError::MemberTooLarge { name, limit });
        }
        if name == member::MANIFEST {
            if manifest_bytes.is_some() {
                return Err(BundleError::DuplicateMember(name));
            }
            if seen != 1 {
                return Err(BundleError::MisplacedMember(name));
            }
            manifest_bytes = Some(member_bytes(entry, &name, size, plain, limit)?);
            continue;
        }
        if name == member::SIGNATURE {
            if signature.is_some() {
                return Err(BundleError::DuplicateMember(name));
            }
            if seen != 2 || manifest_bytes.is_none() {
                return Err(BundleError::MisplacedMember(name));
            }
            signature = Some(member_bytes(entry, &name, size, plain, limit)?);
            continue;
        }
        // The first content member: nothing of it is read before the
        // manifest is authenticated.
        if authenticated.is_none() {
            authenticated = Some(authenticate(
                manifest_bytes.as_deref(),
                signature.as_deref(),
                trust,
            )?);
        }
        let Some((manifest, _)) = &authenticated else {
            return Err(BundleError::MissingMember(member::MANIFEST.into()));
        };
        let want = manifest
            .sha256
            .get(&name)
            .ok_or_else(|| BundleError::NotCovered(name.clone()))?
            .clone();
        if out.contains_key(&name) {
            return Err(BundleError::DuplicateMember(name));
        }
        let bytes = member_bytes(entry, &name, size, plain, limit)?;
        if !manifest::sha256_hex(&bytes).eq_ignore_ascii_case(&want) {
            return Err(BundleError::HashMismatch(name));
        }
        out.insert(name, bytes);
    }
    if seen == 0 {
        return Err(BundleError::NotAnArchive("no members".into()));
    }
    let (manifest, signed_by) = match authenticated {
        Some(a) => a,
        None => authenticate(manifest_bytes.as_deref(), signature.as_deref(), trust)?,
    };
    if let Some(name) = manifest.sha256.keys().find(|n| !out.contains_key(*n)) {
        return Err(BundleError::NotCovered(name.clone()));
    }
    Ok((manifest, signed_by, out))
}

/// What to write into a new bundle's manifest.
#[derive(Debug, Clone)]
pub struct BundleHeader {
    /// Realm name.
    pub realm: String,
    /// Revision number.
    pub revision: u64,
    /// Snapshot or delta.
    pub kind: BundleKind,
    /// Base revision for a delta.
    pub base_revision: Option<u64>,
    /// Build time, unix seconds (supplied by the caller: the core has no clock).
    pub created_at: i64,
    /// Identity settings.
    pub identity: Option<manifest::IdentitySettings>,
}

/// Write a bundle archive from content members (names from
/// [`member::CONTENT`]). The caller is responsible for having validated the
/// members (see [`crate::Snapshot::compile`] and [`crate::source`]).
pub fn write_archive(
    header: &BundleHeader,
    members: &BTreeMap<String, Vec<u8>>,
    signer: Option<&BundleSigner>,
    gzip: bool,
) -> Result<Vec<u8>, BundleError> {
    if let Some(name) = members
        .keys()
        .find(|n| !member::CONTENT.contains(&n.as_str()))
    {
        return Err(BundleError::UnexpectedMember(name.clone()));
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        kind: header.kind,
        realm: header.realm.clone(),
        revision: header.revision,
        base_revision: header.base_revision,
        created_at: header.created_at,
        sha256: members
            .iter()
            .map(|(n, b)| (n.clone(), manifest::sha256_hex(b)))
            .collect(),
        identity: header.identity.clone(),
    };
    let mut manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    manifest_bytes.push(b'\n');
    let mut files: Vec<(&str, &[u8])> = vec![(member::MANIFEST, &manifest_bytes)];
    let sig;
    if let Some(signer) = signer {
        sig = signer.sign(&manifest_bytes);
        files.push((member::SIGNATURE, sig.as_bytes()));
    }
    for (name, bytes) in members {
        files.push((name, bytes));
    }
    let io = |e: std::io::Error| BundleError::NotAnArchive(e.to_string());
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(u64::try_from(header.created_at).unwrap_or(0));
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, name, bytes).map_err(io)?;
    }
    let tar = builder.into_inner().map_err(io)?;
    if !gzip {
        return Ok(tar);
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &tar).map_err(io)?;
    enc.finish().map_err(io)
}
