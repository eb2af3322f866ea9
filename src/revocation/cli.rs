//! `jwt-authz revoke`: revoke tokens, or list the revocations in force, in the shared store
//! the configuration names.

use super::redis::RedisRevocations;
use super::{Kind, Revocation};
use crate::config::{Config, RevocationStoreConfig, RevokeArgs, ServeArgs};

/// Why the command failed.
#[derive(Debug)]
pub enum Failure {
    /// The command or the configuration is wrong (exit 64); one problem a line.
    Usage(String),
    /// The store did not answer (exit 69): nothing was revoked.
    Unavailable(String),
}

/// Runs the command; its output, or why it failed.
pub async fn run(args: &RevokeArgs) -> Result<String, Failure> {
    run_usage(args).await
}

async fn run_usage(args: &RevokeArgs) -> Result<String, Failure> {
    use Failure::{Unavailable, Usage};
    let config = Config::load(&ServeArgs {
        config: Some(args.config.clone()),
        ..ServeArgs::default()
    })
    .map_err(|errors| Usage(errors.lines().join("\n")))?;
    let Some(revocation) = &config.startup.revocation else {
        return Err(Usage(format!(
            "{}: no `revocation` block: revocations are not checked",
            args.config.display()
        )));
    };
    let RevocationStoreConfig::Redis { url } = &revocation.store else {
        return Err(Usage(
            "revocation.store is `memory`: it lives in the serving process only; use a redis:// store to revoke from the command line, or push a Security Event Token to the ssf receiver"
                .to_owned(),
        ));
    };
    let store = RedisRevocations::new(url, revocation).map_err(Usage)?;
    let now_ms = config.clock.now_millis();
    if args.list {
        let set = store
            .read_all()
            .await
            .map_err(|e| Unavailable(format!("revocation store {}: {e}", store.describe())))?;
        let mut out = String::new();
        for r in set.list().into_iter().filter(|r| r.expires_ms > now_ms) {
            out.push_str(&serde_json::to_string(&r).unwrap_or_default());
            out.push('\n');
        }
        return Ok(out);
    }
    let (kind, value) = [
        (Kind::Jti, &args.jti),
        (Kind::Sub, &args.sub),
        (Kind::Sid, &args.sid),
        (Kind::ClientId, &args.client_id),
        (Kind::Email, &args.email),
    ]
    .into_iter()
    .find_map(|(kind, value)| value.as_ref().map(|v| (kind, v.clone())))
    .ok_or_else(|| {
        Usage("name what to revoke: --jti, --sub, --sid, --client-id or --email".to_owned())
    })?;
    let issuer = args.issuer.clone().unwrap_or_default();
    if !config.settings.issuers.iter().any(|i| i.issuer == issuer) {
        return Err(Usage(format!(
            "--issuer `{}` is not an issuer the configuration trusts",
            crate::fetch_url::redact_str(&issuer)
        )));
    }
    let r = Revocation {
        kind,
        issuer,
        value,
        cutoff_ms: now_ms,
        expires_ms: revocation.settings.cutoff_expiry(now_ms),
    };
    let r = super::normalized(r);
    super::validate(&r).map_err(|e| Usage(e.to_string()))?;
    store
        .revoke(&r)
        .await
        .map_err(|e| Unavailable(format!("revocation store {}: {e}", store.describe())))?;
    Ok(format!(
        "{}\n",
        serde_json::to_string(&r).unwrap_or_default()
    ))
}
