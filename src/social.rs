//! Social sign-in with OpenID Connect (promise F5): authorization code flow with PKCE, state and
//! nonce, the ID token's signature, issuer, audience and expiry checked by `openidconnect`.
//! A member first sees what the provider will give and authorizes it; what was received (claim
//! names, never values), from which provider, when, and under which authorization (policy
//! version and the hash of the text shown) is recorded as the data's source. It never logs a
//! claim's value or a token.

use crate::accounts::{Accounts, NewSessionToken, Origin, random_token, token_digest};
use crate::audit::{self, AuditKey, AuditKind, Detail, Event};
use crate::config::{Config, SocialPreset, SocialProviderConfig};
use crate::error::{Error, Result};
use crate::store::{self, Store};
use anyhow::Context;
use covenant_core::policy::Policy;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse, reqwest,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a started sign-in waits for the provider's redirect.
const FLOW_SECONDS: i64 = 600;
/// How long a new provider account waits for the registration form.
const PENDING_SECONDS: i64 = 3600;
/// Discovery documents (and their signing keys) are fetched again after this long.
const METADATA_TTL: Duration = Duration::from_secs(3600);

/// A configured provider, presets applied.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub name: String,
    pub issuer: String,
    client_id: String,
    client_secret: String,
    pub scopes: Vec<String>,
    pub fields: Vec<String>,
}

impl Provider {
    pub fn from_config(config: &SocialProviderConfig) -> anyhow::Result<Self> {
        let id = config.id.trim().to_string();
        anyhow::ensure!(
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "social provider id {id:?} must be lowercase letters, digits and '-'"
        );
        let (name, issuer, scopes, fields): (&str, &str, &[&str], &[&str]) = match config.preset {
            SocialPreset::Google => (
                "Google",
                "https://accounts.google.com",
                &["email", "profile"],
                &[
                    "your Google account number",
                    "your email address, and whether Google has verified it",
                    "your name and profile picture",
                    "your language",
                ],
            ),
            SocialPreset::Facebook => (
                "Facebook",
                "https://www.facebook.com",
                &["email", "public_profile"],
                &[
                    "your Facebook account number for this forum",
                    "your name and profile picture",
                    "your email address",
                ],
            ),
            SocialPreset::Generic => (
                "",
                "",
                &["email", "profile"],
                &[
                    "your account number there",
                    "your email address",
                    "your name",
                ],
            ),
        };
        let or = |given: &str, preset: &str| {
            if given.trim().is_empty() {
                preset.to_string()
            } else {
                given.trim().to_string()
            }
        };
        let provider = Self {
            name: or(&config.name, if name.is_empty() { &id } else { name }),
            issuer: or(&config.issuer, issuer).trim_end_matches('/').to_string(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scopes: if config.scopes.is_empty() {
                scopes.iter().map(|s| s.to_string()).collect()
            } else {
                config.scopes.clone()
            },
            fields: if config.fields.is_empty() {
                fields.iter().map(|s| s.to_string()).collect()
            } else {
                config.fields.clone()
            },
            id,
        };
        anyhow::ensure!(
            !provider.issuer.is_empty(),
            "social provider {} needs an issuer",
            provider.id
        );
        anyhow::ensure!(
            !provider.client_id.is_empty(),
            "social provider {} needs a client_id",
            provider.id
        );
        Ok(provider)
    }

    /// What the member reads before authorizing; its hash is recorded with the link.
    pub fn consent_text(&self, site: &str) -> String {
        format!(
            "{name} will give {site}: {fields}. We use them to sign you in and, for a new \
             account, to fill in your email address. We record what we received, from {name}, \
             when, and this authorization, as the source of that data; you can unlink {name} \
             at any time from your account page.",
            name = self.name,
            fields = self.fields.join("; "),
        )
    }
}

/// How a provider's answer ended.
pub enum Finished {
    /// A linked account signed in.
    SignedIn(NewSessionToken),
    /// The provider account was linked to the signed-in member.
    Linked,
    /// A provider account no member has: the person completes registration with this token.
    NeedsAccount(String),
}

/// What a waiting provider account offers the registration form.
pub struct PendingAccount {
    pub provider_name: String,
    pub email: String,
}

/// The social sign-in services.
#[derive(Clone)]
pub struct Social {
    store: Store,
    accounts: Accounts,
    audit: AuditKey,
    providers: Arc<Vec<Provider>>,
    base_url: String,
    site_name: String,
    http: reqwest::Client,
    metadata: Arc<tokio::sync::Mutex<HashMap<String, (Instant, CoreProviderMetadata)>>>,
}

impl Social {
    pub fn new(
        store: Store,
        accounts: Accounts,
        audit: AuditKey,
        config: &Config,
    ) -> anyhow::Result<Self> {
        let providers = config
            .social_providers
            .iter()
            .map(Provider::from_config)
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Redirects are never followed: a provider that redirects its token endpoint could
        // otherwise send the code elsewhere (openidconnect's advice).
        let http = reqwest::ClientBuilder::new()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTP client for social sign-in")?;
        Ok(Self {
            store,
            accounts,
            audit,
            providers: Arc::new(providers),
            base_url: config.base_url().to_string(),
            site_name: config.site_name.clone(),
            http,
            metadata: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
        })
    }

    pub fn providers(&self) -> &[Provider] {
        &self.providers
    }

    pub fn provider(&self, id: &str) -> Result<&Provider> {
        self.providers
            .iter()
            .find(|p| p.id == id)
            .ok_or(Error::NotFound("sign-in provider"))
    }

    pub fn site_name(&self) -> &str {
        &self.site_name
    }

    async fn metadata(&self, provider: &Provider) -> Result<CoreProviderMetadata> {
        let mut cache = self.metadata.lock().await;
        if let Some((at, metadata)) = cache.get(&provider.id)
            && at.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(provider.issuer.clone())
            .map_err(|_| Error::SocialSignIn("the provider's issuer is not a valid URL"))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|error| {
                tracing::warn!(provider = %provider.id, error = %error, "OIDC discovery failed");
                Error::SocialSignIn("the provider could not be reached")
            })?;
        cache.insert(provider.id.clone(), (Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn redirect_url(&self, provider: &Provider) -> Result<RedirectUrl> {
        RedirectUrl::new(format!("{}/auth/{}/callback", self.base_url, provider.id))
            .map_err(|e| Error::Internal(anyhow::anyhow!("the redirect URL is invalid: {e}")))
    }

    /// Starts a sign-in (or, with `linking`, a link for that member) once the member has
    /// authorized it; returns the provider's authorization URL to send the browser to.
    pub async fn begin(
        &self,
        provider_id: &str,
        linking: Option<i64>,
        policy: &Policy,
    ) -> Result<String> {
        let provider = self.provider(provider_id)?;
        let metadata = self.metadata(provider).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(provider.client_secret.clone())),
        )
        .set_redirect_uri(self.redirect_url(provider)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &provider.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let expired = store::delete_expired_social(&mut tx, now).await?;
        store::insert_social_flow(
            &mut tx,
            &store::NewSocialFlow {
                state_hash: &token_digest(state.secret()),
                provider: &provider.id,
                pkce_verifier: verifier.secret(),
                nonce: nonce.secret(),
                user_id: linking,
                policy_version: policy.version(),
                text_hash: &crate::news::sha256_hex(&provider.consent_text(&self.site_name)),
                now,
                expires_at: now + FLOW_SECONDS,
            },
        )
        .await?;
        tx.commit()
            .await
            .context("committing a social sign-in start")?;
        // The expired waiting accounts' keys go with their rows.
        self.store.destroy_row_keys(&expired).await?;
        Ok(url.to_string())
    }

    /// Finishes a sign-in from the provider's redirect: the state names a flow started here
    /// (once), the code is exchanged with the PKCE verifier, and the ID token must verify
    /// (signature, issuer, audience, expiry, nonce).
    pub async fn finish(
        &self,
        provider_id: &str,
        state: &str,
        code: &str,
        origin: &Origin,
    ) -> Result<Finished> {
        let provider = self.provider(provider_id)?;
        let now = crate::now();
        let mut tx = self.store.begin().await?;
        let flow =
            store::take_social_flow(&mut tx, &token_digest(state), &provider.id, now).await?;
        tx.commit().await.context("using a social sign-in flow")?;
        let flow = flow.ok_or(Error::SocialSignIn(
            "this sign-in was not started here, has expired, or was already used (state)",
        ))?;
        let metadata = self.metadata(provider).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(provider.client_secret.clone())),
        )
        .set_redirect_uri(self.redirect_url(provider)?);
        let exchange = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| Error::SocialSignIn("the provider has no token endpoint"))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()));
        let tokens = exchange.request_async(&self.http).await.map_err(|error| {
            tracing::info!(provider = %provider.id, error = %error, "authorization code refused");
            Error::SocialSignIn(
                "the provider refused the authorization code (already used, expired or not \
                 issued for this sign-in)",
            )
        })?;
        let id_token = tokens
            .id_token()
            .ok_or(Error::SocialSignIn("the provider sent no ID token"))?;
        let verifier = client.id_token_verifier();
        let claims = id_token
            .claims(&verifier, &Nonce::new(flow.nonce.clone()))
            .map_err(|error| {
                tracing::info!(provider = %provider.id, error = %error, "ID token refused");
                Error::SocialSignIn(match error {
                    ClaimsVerificationError::Expired(_) => "the provider's ID token has expired",
                    ClaimsVerificationError::SignatureVerification(_) => {
                        "the provider's ID token signature does not verify"
                    }
                    ClaimsVerificationError::InvalidNonce(_) => {
                        "the ID token was not issued for this sign-in (nonce)"
                    }
                    ClaimsVerificationError::InvalidIssuer(_) => {
                        "the ID token comes from another issuer"
                    }
                    ClaimsVerificationError::InvalidAudience(_) => {
                        "the ID token was issued for another client"
                    }
                    _ => "the provider's ID token is not valid",
                })
            })?;
        let subject = claims.subject().as_str().to_string();
        let email = claims.email().map(|e| e.as_str().to_string());
        let mut received = vec!["subject"];
        if email.is_some() {
            received.push("email");
        }
        if claims.email_verified().is_some() {
            received.push("email_verified");
        }
        if claims.name().is_some() {
            received.push("name");
        }
        if claims.picture().is_some() {
            received.push("picture");
        }
        if claims.locale().is_some() {
            received.push("locale");
        }
        let fields_received = received.join(",");
        let mut tx = self.store.begin().await?;
        if let Some(user_id) = flow.user_id {
            store::insert_social_link(
                &self.store,
                &mut tx,
                &store::NewSocialLink {
                    user_id,
                    provider: &provider.id,
                    subject: &subject,
                    fields_received: &fields_received,
                    policy_version: &flow.policy_version,
                    text_hash: &flow.text_hash,
                    authorized_at: flow.created_at,
                    now,
                },
            )
            .await?;
            audit::record(
                &mut tx,
                &self.audit,
                Event::by_self(AuditKind::SocialLinked, user_id)
                    .detail(Detail::Provider(provider.id.clone())),
            )
            .await?;
            tx.commit().await.context("committing a social link")?;
            tracing::info!(user_id, provider = %provider.id, "provider account linked");
            return Ok(Finished::Linked);
        }
        if let Some(user_id) = store::social_sign_in(
            &self.store,
            &mut tx,
            &provider.id,
            &subject,
            &fields_received,
            now,
        )
        .await?
        {
            let user = self
                .store
                .user_by_id(user_id)
                .await?
                .filter(|u| u.closed_at.is_none())
                .ok_or(Error::BadCredentials)?;
            if self
                .store
                .two_factor_of(user_id)
                .await?
                .is_some_and(|tf| tf.enabled_at.is_some())
            {
                return Err(Error::SocialSignIn(
                    "this account uses 2-step verification: sign in with its password and code",
                ));
            }
            let session = self
                .accounts
                .open_session_in(
                    &mut tx,
                    &user,
                    origin,
                    "social",
                    random_token(),
                    random_token(),
                    now,
                )
                .await?;
            tx.commit().await.context("committing a social sign-in")?;
            tracing::info!(user_id, provider = %provider.id, "signed in with a provider");
            return Ok(Finished::SignedIn(session));
        }
        let token = random_token();
        store::insert_social_pending(
            &self.store,
            &mut tx,
            &store::NewSocialPending {
                token_hash: &token_digest(&token),
                provider: &provider.id,
                subject: &subject,
                // Lower case, so that export and erasure find it by the address.
                email: &email.as_deref().unwrap_or_default().to_lowercase(),
                email_verified: claims.email_verified().unwrap_or(false),
                fields_received: &fields_received,
                policy_version: &flow.policy_version,
                text_hash: &flow.text_hash,
                authorized_at: flow.created_at,
                expires_at: now + PENDING_SECONDS,
            },
        )
        .await?;
        tx.commit()
            .await
            .context("committing a provider account waiting for registration")?;
        Ok(Finished::NeedsAccount(token))
    }

    /// What the registration form of a waiting provider account shows.
    pub async fn pending(&self, token: &str) -> Result<PendingAccount> {
        let pending = self
            .store
            .social_pending(&token_digest(token), crate::now())
            .await?
            .ok_or(Error::InvalidToken)?;
        Ok(PendingAccount {
            provider_name: self
                .provider(&pending.provider)
                .map(|p| p.name.clone())
                .unwrap_or(pending.provider),
            email: pending.email,
        })
    }

    /// Removes a member's link to a provider. An account without a password can still get in
    /// through the password reset email, so the last link may go too.
    pub async fn unlink(&self, user_id: i64, provider_id: &str) -> Result<()> {
        let mut tx = self.store.begin().await?;
        if !store::delete_social_link(&mut tx, user_id, provider_id).await? {
            tx.rollback().await.context("rolling back an unlink")?;
            return Err(Error::NotFound("link"));
        }
        audit::record(
            &mut tx,
            &self.audit,
            Event::by_self(AuditKind::SocialUnlinked, user_id)
                .detail(Detail::Provider(provider_id.to_string())),
        )
        .await?;
        tx.commit().await.context("committing an unlink")?;
        Ok(())
    }
}
