//! `pdp`: build, sign, inspect and verify Gatehouse bundles, and answer
//! decisions over JSON Lines. A thin shell over the `pdp_core` library:
//! all I/O lives here.

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use pdp_core::bundle::{Bundle, BundleError, Limits, Trust};
use pdp_core::chain::{self, ChainError};
use pdp_core::decision::{BatchRequest, Request, Tagged, TokenRequest};
use pdp_core::manifest::member;
use pdp_core::sign::{BundleSigner, Keyring};
use pdp_core::source::{BuildOptions, build, build_and_load};
use pdp_core::{LoadOptions, Snapshot, load};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "pdp",
    version,
    about = "Gatehouse decision core: bundles and decisions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate an Ed25519 bundle-signing key pair.
    Keygen {
        /// Write `<OUT>.key.pem` and `<OUT>.pub.pem` (default: private key to stdout).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Build, inspect and verify bundles.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Answer JSON Lines requests from stdin, one answer line each on stdout.
    Decide(DecideArgs),
    /// Answer JSON Lines searches from stdin (`resource`: which resources
    /// of a type may a principal act on; `subject`: who may act on a
    /// resource; `action`: which actions may a principal take on it), one
    /// page each on stdout.
    Search {
        /// What is searched for.
        #[arg(value_parser = ["resource", "subject", "action"])]
        kind: String,
        #[command(flatten)]
        args: DecideArgs,
    },
    /// Write a deterministic synthetic realm source directory.
    Synth {
        /// Number of users.
        #[arg(long)]
        users: usize,
        /// Output directory.
        #[arg(short, long)]
        out: PathBuf,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum BundleCmd {
    /// Build a bundle from a source directory.
    Build {
        /// Source directory (policies.cedar required; schema.cedarschema,
        /// entities.json, users.jsonl, links.json, routes.json, authzen.json, identity.json optional).
        #[arg(long)]
        dir: PathBuf,
        /// PKCS#8 PEM Ed25519 key to sign with (unsigned bundles load only in dev mode).
        #[arg(long)]
        sign_key: Option<PathBuf>,
        /// Revision number.
        #[arg(long, default_value_t = 1)]
        revision: u64,
        /// Realm name.
        #[arg(long, default_value = "default")]
        realm: String,
        /// Build time (unix seconds; default now).
        #[arg(long)]
        created_at: Option<i64>,
        /// Write a plain tar instead of tar.gz.
        #[arg(long)]
        no_gzip: bool,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a bundle's manifest and contents summary (signature not checked).
    Inspect {
        /// Bundle file.
        file: PathBuf,
    },
    /// Verify a bundle's signature and hashes and compile it.
    Verify {
        /// Bundle file.
        file: PathBuf,
        /// Trusted public key(s), SPKI PEM.
        #[arg(long = "trust-key", required = true)]
        trust_key: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct DecideArgs {
    /// Bundle file; a realm's directory in a published store (holding
    /// `HEAD`: the snapshot and deltas it names are loaded, each verified);
    /// or a source directory (served unsigned, as in dev mode).
    #[arg(long)]
    bundle: PathBuf,
    /// Trusted public key(s) for a bundle file.
    #[arg(long = "trust-key")]
    trust_key: Vec<PathBuf>,
    /// Accept an unsigned bundle file.
    #[arg(long)]
    dev: bool,
    /// Clock for token requests, unix seconds (default now).
    #[arg(long)]
    now: Option<i64>,
}

/// Print to stdout; a closed pipe (`pdp ... | head`) ends the command
/// quietly instead of panicking.
macro_rules! emit {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        writeln!(out, $($arg)*).and_then(|()| out.flush()).context("stdout")?;
    }};
}

fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("pdp: {msg}");
            ExitCode::from(2)
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}", path.display()))
}

fn read_source(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    for name in member::SOURCE {
        let p = dir.join(name);
        if p.exists() {
            files.insert(name.to_owned(), read(&p)?);
        }
    }
    if !files.contains_key(member::POLICIES) {
        bail!("{}: missing", dir.join(member::POLICIES).display());
    }
    Ok(files)
}

/// Name the file (and position) a bundle error is about.
fn in_dir(dir: &Path, e: BundleError) -> anyhow::Error {
    match &e {
        BundleError::Invalid {
            member,
            position,
            message,
        } => {
            let pos = position
                .map(|(l, c)| format!(":{l}:{c}"))
                .unwrap_or_default();
            anyhow!("{}{pos}: {message}", dir.join(member).display())
        }
        _ => anyhow!("{}: {e}", dir.display()),
    }
}

fn keyring(paths: &[PathBuf]) -> Result<Keyring> {
    let mut ring = Keyring::new();
    for p in paths {
        let pem = String::from_utf8(read(p)?).with_context(|| p.display().to_string())?;
        ring.add_pem(&pem)
            .with_context(|| p.display().to_string())?;
    }
    Ok(ring)
}

fn options(trust: Trust<'_>) -> LoadOptions<'_> {
    LoadOptions {
        trust,
        limits: Limits::default(),
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Keygen { out } => {
            let mut seed = [0u8; 32];
            getrandom::getrandom(&mut seed).map_err(|e| anyhow!("no entropy: {e}"))?;
            let signer = BundleSigner::from_seed(&seed);
            let private = signer.to_pem()?;
            let public = signer.public_pem()?;
            match out {
                Some(prefix) => {
                    let key = prefix.with_extension("key.pem");
                    let publ = prefix.with_extension("pub.pem");
                    write_private(&key, private.as_bytes())?;
                    std::fs::write(&publ, public).with_context(|| publ.display().to_string())?;
                    emit!(
                        "kid {} -> {} {}",
                        signer.kid(),
                        key.display(),
                        publ.display()
                    );
                }
                None => {
                    emit!("{}", private.trim_end());
                    eprintln!("kid {}\n{public}", signer.kid());
                }
            }
        }
        Command::Bundle(BundleCmd::Build {
            dir,
            sign_key,
            revision,
            realm,
            created_at,
            no_gzip,
            output,
        }) => {
            let files = read_source(&dir)?;
            let signer = match &sign_key {
                Some(p) => Some(
                    BundleSigner::from_pem(&String::from_utf8_lossy(&read(p)?))
                        .with_context(|| p.display().to_string())?,
                ),
                None => {
                    eprintln!(
                        "pdp: warning: building an UNSIGNED bundle; hosts load it only in dev mode"
                    );
                    None
                }
            };
            let opts = BuildOptions {
                realm,
                revision,
                created_at: created_at.unwrap_or_else(now),
                gzip: !no_gzip,
            };
            let bytes = build(&files, &opts, signer.as_ref()).map_err(|e| in_dir(&dir, e))?;
            write_atomic(&output, &bytes)?;
            emit!(
                "built {} ({} bytes, realm {}, revision {}{})",
                output.display(),
                bytes.len(),
                opts.realm,
                opts.revision,
                signer
                    .map(|s| format!(", signed by {}", s.kid()))
                    .unwrap_or_default()
            );
        }
        Command::Bundle(BundleCmd::Inspect { file }) => {
            let bytes = read(&file)?;
            let bundle = Bundle::open(&bytes, Trust::Dev, &Limits::default())
                .with_context(|| file.display().to_string())?;
            let snap = Snapshot::compile(&bundle).with_context(|| file.display().to_string())?;
            let summary = serde_json::json!({
                "manifest": bundle.manifest,
                "signed": bytes_have_signature(&bytes),
                "policies": snap.policy_count(),
                "entities": snap.entity_count(),
                "users": snap.directory().map(|d| d.len()),
            });
            emit!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Bundle(BundleCmd::Verify { file, trust_key }) => {
            let ring = keyring(&trust_key)?;
            let bytes = read(&file)?;
            let snap = load(&bytes, &options(Trust::Keyring(&ring)), None)
                .with_context(|| file.display().to_string())?;
            emit!(
                "ok: realm {} revision {} signed by {}",
                snap.realm(),
                snap.revision(),
                snap.signed_by().unwrap_or("?")
            );
        }
        Command::Decide(args) => {
            let snap = open_for(&args)?;
            let now = args.now.unwrap_or_else(now);
            answer_lines(|line| answer_line(&snap, line, now))?;
        }
        Command::Search { kind, args } => {
            let snap = open_for(&args)?;
            answer_lines(|line| snap.search_json(&kind, line.as_bytes()).to_json())?;
        }
        Command::Synth { users, out, seed } => {
            std::fs::create_dir_all(&out).with_context(|| out.display().to_string())?;
            for (name, bytes) in pdp_core::synth::realm(users, seed) {
                let p = out.join(name);
                std::fs::write(&p, bytes).with_context(|| p.display().to_string())?;
            }
            emit!(
                "wrote a synthetic realm with {users} users to {}",
                out.display()
            );
        }
    }
    Ok(())
}

fn bytes_have_signature(bytes: &[u8]) -> bool {
    // Open as dev, then check again with an empty keyring: "unsigned" means
    // the signature member is absent, any other refusal means it is present.
    !matches!(
        Bundle::open(bytes, Trust::Keyring(&Keyring::new()), &Limits::default()),
        Err(BundleError::Unsigned)
    )
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| path.display().to_string())?;
    f.write_all(bytes)
        .with_context(|| path.display().to_string())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, bytes).with_context(|| tmp.display().to_string())?;
    std::fs::rename(&tmp, path).with_context(|| path.display().to_string())
}

/// The snapshot a `decide` or `search` runs on.
fn open_for(args: &DecideArgs) -> Result<Snapshot> {
    let trust_of = |ring| match (args.dev, ring) {
        (_, Some(ring)) => Ok(Trust::Keyring(ring)),
        (true, None) => Ok(Trust::Dev),
        (false, None) => Err(anyhow::anyhow!(
            "{}: give --trust-key, or --dev for an unsigned bundle",
            args.bundle.display()
        )),
    };
    let ring = keyring(&args.trust_key)?;
    let ring = (!ring.is_empty()).then_some(&ring);
    let snap = if args.bundle.join(pdp_core::layout::HEAD).is_file() {
        load_published(&args.bundle, &options(trust_of(ring)?))?
    } else if args.bundle.is_dir() {
        let files = read_source(&args.bundle)?;
        let opts = BuildOptions {
            realm: "default".into(),
            revision: 1,
            created_at: now(),
            gzip: false,
        };
        build_and_load(&files, &opts, None)
            .map_err(|e| in_dir(&args.bundle, e))?
            .1
    } else {
        let bytes = read(&args.bundle)?;
        load(&bytes, &options(trust_of(ring)?), None)
            .with_context(|| args.bundle.display().to_string())?
    };
    Ok(snap)
}

/// Each non-blank line of stdin answered by `answer`, one line each on stdout.
fn answer_lines(answer: impl Fn(&str) -> String) -> Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in stdin.lock().lines() {
        let line = line.context("stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(out, "{}", answer(&line))?;
        out.flush()?;
    }
    Ok(())
}

/// A realm as published to a local store directory: `HEAD`, then the
/// snapshot it names and every delta after it, each verified and applied
/// in order by `pdp_core::chain`. `dir` is the realm's directory (object
/// keys are `<realm>/...`, so the realm part is dropped).
fn load_published(dir: &Path, opts: &pdp_core::LoadOptions<'_>) -> Result<Snapshot> {
    let head_path = dir.join(pdp_core::layout::HEAD);
    let head = pdp_core::layout::Head::open(&read(&head_path)?, opts.trust)
        .with_context(|| head_path.display().to_string())?;
    let keys = pdp_core::layout::RealmKeys::new("", &head.realm);
    let file = |key: &str| dir.join(key.split_once('/').map_or(key, |(_, k)| k));
    let get = |key: &str| {
        let path = file(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(path.display().to_string())),
        }
    };
    match chain::load(get, &head, &keys, None, opts) {
        Ok(chain::Loaded::Updated(snap)) => Ok(snap),
        Ok(chain::Loaded::Current) => bail!("{}: nothing to load", head_path.display()),
        Err(ChainError::Get(e)) => Err(e),
        Err(ChainError::Missing { key }) => bail!("{}: missing", file(&key).display()),
        Err(ChainError::Bundle { key, source }) => {
            Err(anyhow::Error::new(source).context(file(&key).display().to_string()))
        }
        Err(ChainError::Misplaced {
            key,
            expected,
            found,
        }) => bail!(
            "{}: holds {found}, where the chain needs {expected}",
            file(&key).display()
        ),
        Err(e) => Err(anyhow!("{}: {e}", dir.display())),
    }
}

/// One JSON Lines request to one tagged answer line.
fn answer_line(snap: &Snapshot, line: &str, now: i64) -> String {
    let value: serde_json::Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Tagged::<()>::failure("invalid_json", e.to_string()).to_json(),
    };
    if value.get("requests").is_some() {
        let r: Tagged<_> = match serde_json::from_value::<BatchRequest>(value) {
            Ok(b) => snap.batch_is_authorized(&b).into(),
            Err(e) => Tagged::failure("invalid_json", e.to_string()),
        };
        r.to_json()
    } else if value.get("token").is_some() {
        let r: Tagged<_> = match serde_json::from_value::<TokenRequest>(value) {
            Ok(t) => snap.is_authorized_with_token(&t, now).into(),
            Err(e) => Tagged::failure("invalid_json", e.to_string()),
        };
        r.to_json()
    } else {
        let r: Tagged<_> = match serde_json::from_value::<Request>(value) {
            Ok(q) => snap.is_authorized(&q).into(),
            Err(e) => Tagged::failure("invalid_json", e.to_string()),
        };
        r.to_json()
    }
}
