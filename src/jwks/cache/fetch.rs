//! Fetching an issuer's keys: discovery, the JWKS download within its size and time
//! limits, each failure named without the URL's credentials.

use super::*;

/// `<issuer>/.well-known/<name>` (RFC 8414 §3 places it after the issuer's path).
pub(crate) fn well_known(issuer: &Url, name: &str) -> Url {
    let mut url = issuer.clone();
    let path = format!("{}/.well-known/{name}", issuer.path().trim_end_matches('/'));
    url.set_path(&path);
    url.set_query(None);
    url
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

impl JwksCache {
    pub(super) async fn download(
        &self,
        state: &mut FetchState,
    ) -> Result<(Arc<KeySet>, Vec<String>), JwksError> {
        let url = match &self.source {
            JwksSource::Uri(url) => url.clone(),
            JwksSource::Discover => match &state.discovered {
                Some(url) => url.clone(),
                None => {
                    let url = self.discover().await?;
                    state.discovered = Some(url.clone());
                    url
                }
            },
        };
        let body = self.get(&url).await?;
        let (set, skipped) =
            KeySet::parse(&body).map_err(|source| JwksError::KeySet { url, source })?;
        Ok((Arc::new(set), skipped))
    }

    /// Resolves the JWKS URL: the discovery document's `jwks_uri` when the issuer serves
    /// one (its `issuer` must match exactly), else Auth0's `.well-known/jwks.json`.
    pub(super) async fn discover(&self) -> Result<Url, JwksError> {
        let discovery_url = well_known(&self.issuer_url, "openid-configuration");
        match self.get(&discovery_url).await {
            Ok(body) => {
                let doc: Discovery =
                    serde_json::from_slice(&body).map_err(|e| JwksError::Discovery {
                        url: discovery_url.clone(),
                        reason: format!("not a discovery document: {e}"),
                    })?;
                if doc.issuer != self.issuer {
                    return Err(JwksError::Discovery {
                        url: discovery_url,
                        // Both redacted (a URL's userinfo and query never shown) and
                        // clipped: the document's value is the provider's to choose.
                        reason: format!(
                            "document names issuer {:?}, expected {:?}",
                            crate::telemetry::clip(&crate::fetch_url::redact_str(&doc.issuer), 200),
                            crate::fetch_url::redact_str(&self.issuer)
                        ),
                    });
                }
                // The value is not echoed: unparsed, it cannot be redacted.
                let jwks = Url::parse(&doc.jwks_uri).map_err(|e| JwksError::Discovery {
                    url: discovery_url.clone(),
                    reason: format!("jwks_uri is not a URL: {e}"),
                })?;
                // Never downgrade: an https issuer's keys must come over https.
                if self.issuer_url.scheme() == "https" && jwks.scheme() != "https" {
                    return Err(JwksError::Discovery {
                        url: discovery_url,
                        reason: format!("jwks_uri {} is not https", Redacted(&jwks)),
                    });
                }
                // invariant: a discovered URL obeys the rule a configured one does.
                if let Err(reason) = check_scheme(&jwks, self.settings.insecure_allow_http) {
                    return Err(JwksError::Discovery {
                        url: discovery_url,
                        reason: format!("jwks_uri: {reason}"),
                    });
                }
                Ok(jwks)
            }
            Err(JwksError::Status { status: 404, .. }) => {
                Ok(well_known(&self.issuer_url, "jwks.json"))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn get(&self, url: &Url) -> Result<Vec<u8>, JwksError> {
        // reqwest names the URL in its errors, query and userinfo included: drop it, the
        // error's own `url` is shown redacted.
        let http = |e: reqwest::Error| JwksError::Http {
            url: url.clone(),
            reason: error_chain(&e.without_url()),
        };
        let max = self.settings.max_bytes;
        let mut response = self.client.get(url.clone()).send().await.map_err(http)?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status {
                url: url.clone(),
                status: status.as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(JwksError::TooLarge {
                url: url.clone(),
                max,
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > max {
                return Err(JwksError::TooLarge {
                    url: url.clone(),
                    max,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
