//! The token pool: minted from a PEM key (in parallel, RSA signing is slow) or read from a
//! file, with a configurable fraction made invalid by one changed signature character.

use std::path::Path;

use anyhow::{Context, bail};
use jsonwebtoken::Algorithm;
use jwt_authz::demo::issuer::access_token_claims;
use jwt_authz::testkit::{self, TestKey};

use crate::MintArgs;

/// Tokens to send, and which of them the server must accept.
pub struct Pool {
    tokens: Vec<String>,
    valid: Vec<bool>,
}

impl Pool {
    pub fn from_args(args: &MintArgs) -> anyhow::Result<Pool> {
        if !(0.0..=1.0).contains(&args.invalid_fraction) {
            bail!("--invalid-fraction must be between 0 and 1");
        }
        if args.tokens == 0 {
            bail!("--tokens must be at least 1");
        }
        let tokens = match &args.tokens_file {
            Some(path) => read(path, args.tokens)?,
            None => mint(args)?,
        };
        // Spread the invalid ones evenly: token i is invalid when the running total of
        // `invalid_fraction` crosses an integer there.
        let f = args.invalid_fraction;
        let valid: Vec<bool> = (0..tokens.len())
            .map(|i| ((i + 1) as f64 * f).floor() == (i as f64 * f).floor())
            .collect();
        let tokens = tokens
            .into_iter()
            .zip(&valid)
            .map(|(t, ok)| {
                if *ok {
                    t
                } else {
                    testkit::corrupt_signature(&t)
                }
            })
            .collect();
        Ok(Pool { tokens, valid })
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Token `i` (modulo the pool size) and whether it is valid.
    pub fn get(&self, i: usize) -> (&str, bool) {
        let i = i % self.tokens.len();
        (&self.tokens[i], self.valid[i])
    }

    pub fn invalid(&self) -> usize {
        self.valid.iter().filter(|v| !**v).count()
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut text = self.tokens.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

fn read(path: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let tokens: Vec<String> = text
        .lines()
        .filter(|l| !l.is_empty())
        .take(count)
        .map(str::to_owned)
        .collect();
    if tokens.len() < count {
        bail!(
            "{} holds {} tokens, {count} asked for",
            path.display(),
            tokens.len()
        );
    }
    Ok(tokens)
}

fn algorithm(name: &str) -> anyhow::Result<Algorithm> {
    Ok(match name {
        "RS256" => Algorithm::RS256,
        "PS256" => Algorithm::PS256,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => bail!("--alg {other}: not one of RS256, PS256, ES256, ES384, EdDSA"),
    })
}

fn mint(args: &MintArgs) -> anyhow::Result<Vec<String>> {
    let alg = algorithm(&args.alg)?;
    let pem =
        std::fs::read(&args.key).with_context(|| format!("reading {}", args.key.display()))?;
    let key = TestKey::from_pem(&args.kid, alg, &pem)
        .with_context(|| format!("{} is not a {} key", args.key.display(), args.alg))?;
    let now = testkit::now();
    let exp = now + args.ttl.as_secs();
    let sign = |i: usize| -> anyhow::Result<String> {
        let sub = format!("loadgen|user-{i}");
        let mut claims =
            access_token_claims(&args.issuer, &args.audience, &sub, &args.scope, now, exp);
        claims["jti"] = format!("{now:x}-{i}").into();
        Ok(testkit::mint(&key, &claims))
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = args.tokens.div_ceil(threads);
    let started = std::time::Instant::now();
    let parts: Vec<anyhow::Result<Vec<String>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let range = (t * chunk)..((t + 1) * chunk).min(args.tokens);
                s.spawn(move || range.map(sign).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a minting thread panicked"))
            .collect()
    });
    let mut tokens = Vec::with_capacity(args.tokens);
    for part in parts {
        tokens.extend(part?);
    }
    if args.tokens > 1000 {
        eprintln!(
            "minted {} {} tokens in {:.1}s",
            tokens.len(),
            args.alg,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(tokens)
}
