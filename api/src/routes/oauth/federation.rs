//! Federated login (docs/identity.md "Federated login"): practitioners sign in through an upstream OpenID Connect
//! provider configured by the operator (`JHE_OIDC_ISSUER`, `JHE_OIDC_CLIENT_ID`, `JHE_OIDC_CLIENT_SECRET`).
//!
//! `/accounts/oidc/login/` starts an authorization-code flow at the upstream with `state`, `nonce` and PKCE S256;
//! the sign-in in progress is stored server-side (sha256 of `state`, single use, ten minutes) and bound to the
//! browser by a cookie of its own, so a stolen callback URL is useless in another browser.
//! `/accounts/oidc/callback/` exchanges the code, verifies the ID token with the `openidconnect` crate (JWKS
//! signature, `iss`, `aud`, `nonce`, expiry), needs a verified email, finds the jhe practitioner (by the stored link
//! (issuer, subject) first, else by email, which makes the link) and starts a normal jhe session.

use super::pages::{current_session, error_page, escape, redirect, safe_next, start_session};
use super::{form_pairs, param};
use crate::AppState;
use crate::error::OAuthError;
use crate::extract::RequestUrl;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreClientAuthMethod, CoreIdTokenClaims, CoreProviderMetadata,
    CoreUserInfoClaims,
};
use openidconnect::{
    AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, TokenResponse,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The cookie that binds a sign-in in progress to the browser that started it (only sent to `/accounts/oidc/`).
const BROWSER_COOKIE: &str = "jhe_oidc";
/// How long a sign-in at the upstream may take.
const LOGIN_LIFETIME_SECONDS: i64 = 600;
/// How long discovered metadata (and with it the upstream's JWKS) is reused; a signature that does not verify
/// re-discovers at once (the upstream may have rotated its keys).
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// Every request to the upstream gives up after this long.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// The callback path; the upstream client's redirect URI is `<origin>` followed by it.
pub const CALLBACK_PATH: &str = "/accounts/oidc/callback/";

type UpstreamClient =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// The upstream OpenID Connect provider as the operator configured it.
#[derive(Clone)]
pub struct FederationConfig {
    /// `JHE_OIDC_ISSUER`: the issuer URL; its `/.well-known/openid-configuration` is discovered on first use
    pub issuer: String,
    /// `JHE_OIDC_CLIENT_ID`
    pub client_id: String,
    /// `JHE_OIDC_CLIENT_SECRET`
    pub client_secret: String,
    /// `JHE_OIDC_NAME`: the provider's name on the login page's button (default "single sign-on")
    pub name: String,
    /// `JHE_OIDC_SCOPES` (default `openid email`); `openid` is always asked for
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for FederationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Why federated login cannot be set up (the server refuses to start).
#[derive(Debug, thiserror::Error)]
pub enum FederationConfigError {
    #[error(
        "{0} is not set: federated login needs JHE_OIDC_ISSUER, JHE_OIDC_CLIENT_ID and JHE_OIDC_CLIENT_SECRET together"
    )]
    Missing(&'static str),
    #[error("JHE_OIDC_ISSUER `{0}` is not an http(s) URL")]
    Issuer(String),
    #[error("the HTTP client for the upstream provider cannot be built: {0}")]
    Http(String),
}

impl FederationConfig {
    /// A configuration with the default name and scopes.
    pub fn new(issuer: impl Into<String>, client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        FederationConfig {
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            name: "single sign-on".to_owned(),
            scopes: vec!["openid".to_owned(), "email".to_owned()],
        }
    }

    /// The configuration in the environment; `None` when `JHE_OIDC_ISSUER` is unset or empty (federated login off).
    pub fn from_env() -> Result<Option<Self>, FederationConfigError> {
        let var = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let Some(issuer) = var("JHE_OIDC_ISSUER") else {
            return Ok(None);
        };
        let client_id = var("JHE_OIDC_CLIENT_ID").ok_or(FederationConfigError::Missing("JHE_OIDC_CLIENT_ID"))?;
        let client_secret =
            var("JHE_OIDC_CLIENT_SECRET").ok_or(FederationConfigError::Missing("JHE_OIDC_CLIENT_SECRET"))?;
        let mut config = FederationConfig::new(issuer, client_id, client_secret);
        if let Some(name) = var("JHE_OIDC_NAME") {
            config.name = name;
        }
        if let Some(scopes) = var("JHE_OIDC_SCOPES") {
            config.scopes = scopes.split_whitespace().map(str::to_owned).collect();
        }
        Ok(Some(config))
    }
}

/// Federated login: the configuration and the upstream's metadata, discovered on first use and cached.
pub struct Federation {
    config: FederationConfig,
    issuer: IssuerUrl,
    http: reqwest::Client,
    metadata: tokio::sync::Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Federation {
    /// Checks the configuration; nothing is fetched until the first sign-in.
    pub fn new(config: FederationConfig) -> Result<Arc<Self>, FederationConfigError> {
        let parsed =
            url::Url::parse(&config.issuer).map_err(|_| FederationConfigError::Issuer(config.issuer.clone()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(FederationConfigError::Issuer(config.issuer.clone()));
        }
        if parsed.scheme() == "http" && !is_loopback(&parsed) {
            // allowed (tests, closed networks), but codes, tokens and the client secret travel in clear text
            tracing::warn!(issuer = %config.issuer, "JHE_OIDC_ISSUER is plain http; use https in production");
        }
        let issuer =
            IssuerUrl::new(config.issuer.clone()).map_err(|_| FederationConfigError::Issuer(config.issuer.clone()))?;
        // no redirects: the oauth2 crate's advice against SSRF through a provider's answers
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .map_err(|e| FederationConfigError::Http(e.to_string()))?;
        let mut config = config;
        if !config.scopes.iter().any(|s| s == "openid") {
            config.scopes.insert(0, "openid".to_owned());
        }
        Ok(Arc::new(Federation { config, issuer, http, metadata: tokio::sync::Mutex::new(None) }))
    }

    /// From `JHE_OIDC_*`; `None` when federated login is not configured.
    pub fn from_env() -> Result<Option<Arc<Self>>, FederationConfigError> {
        FederationConfig::from_env()?.map(Federation::new).transpose()
    }

    /// The button label's provider name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The upstream's metadata: cached, or discovered now (`refresh` forces it). A failure is not cached, so the
    /// next sign-in tries again.
    async fn metadata(&self, refresh: bool) -> Result<CoreProviderMetadata, String> {
        let mut cached = self.metadata.lock().await;
        if !refresh
            && let Some((metadata, fetched)) = cached.as_ref()
            && fetched.elapsed() < METADATA_TTL
        {
            return Ok(metadata.clone());
        }
        match CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await {
            Ok(metadata) => {
                *cached = Some((metadata.clone(), Instant::now()));
                Ok(metadata)
            }
            Err(error) => {
                let message = error_chain(&error);
                tracing::warn!(issuer = %self.config.issuer, error = %message, "OpenID Connect discovery failed");
                Err(message)
            }
        }
    }

    fn client(&self, metadata: &CoreProviderMetadata, redirect_uri: RedirectUrl) -> UpstreamClient {
        // HTTP Basic unless the provider says it only takes the secret in the form
        let post_only = metadata.token_endpoint_auth_methods_supported().is_some_and(|methods| {
            methods.contains(&CoreClientAuthMethod::ClientSecretPost)
                && !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
        });
        CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(self.config.client_secret.clone())),
        )
        .set_redirect_uri(redirect_uri)
        .set_auth_type(if post_only { AuthType::RequestBody } else { AuthType::BasicAuth })
    }

    /// The error page for an upstream that cannot be reached or answers nonsense.
    fn unavailable(&self, what: &str) -> Response {
        error_page(
            StatusCode::BAD_GATEWAY,
            &format!(
                "Sign-in with {} is unavailable right now: {what}. Try again later, or log in with your email and \
                 password.",
                self.config.name
            ),
        )
    }
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// An error and its sources, for messages ("Request failed: error sending request: connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/oidc/login/", get(login))
        .route("/accounts/oidc/login", get(login))
        .route(CALLBACK_PATH, get(callback))
        .route("/accounts/oidc/callback", get(callback))
}

/// The login page's "Sign in with …" link, when federated login is configured.
pub(super) fn login_link(state: &AppState, next: &str) -> String {
    let Some(federation) = &state.federation else {
        return String::new();
    };
    let href = url::form_urlencoded::Serializer::new(String::from("/accounts/oidc/login/?"))
        .append_pair("next", next)
        .finish();
    format!("<p><a href=\"{}\">Sign in with {}</a></p>", escape(&href), escape(federation.name()))
}

fn not_configured() -> Response {
    error_page(StatusCode::NOT_FOUND, "Single sign-on is not configured on this server.")
}

fn browser_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == BROWSER_COOKIE && !value.is_empty() && value.len() <= 128).then(|| value.to_owned())
    })
}

fn set_browser_cookie(response: &mut Response, value: &str, max_age: i64) {
    let cookie =
        format!("{BROWSER_COOKIE}={value}; Path=/accounts/oidc/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `GET /accounts/oidc/login/?next=…`: sends the browser to the upstream's authorization endpoint.
async fn login(State(app): State<AppState>, url: RequestUrl, RawQuery(query): RawQuery) -> Response {
    let Some(federation) = app.federation.clone() else {
        return not_configured();
    };
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let next = safe_next(param(&pairs, "next"));
    let metadata = match federation.metadata(false).await {
        Ok(metadata) => metadata,
        Err(error) => {
            let issuer = &federation.config.issuer;
            return federation.unavailable(&format!("its configuration at {issuer} could not be loaded ({error})"));
        }
    };
    let Ok(redirect_uri) = RedirectUrl::new(format!("{}{CALLBACK_PATH}", url.base)) else {
        return error_page(StatusCode::BAD_REQUEST, "This server's address is not a valid URL.");
    };
    let client = federation.client(&metadata, redirect_uri);
    let state = jhe_catalog::random_token(43);
    let nonce = jhe_catalog::random_token(43);
    // RFC 7636 §4.1: 43–128 unreserved characters
    let verifier = PkceCodeVerifier::new(jhe_catalog::random_token(64));
    let browser = jhe_catalog::random_token(43);
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let state = state.clone();
                move || CsrfToken::new(state)
            },
            {
                let nonce = nonce.clone();
                move || Nonce::new(nonce)
            },
        )
        .set_pkce_challenge(PkceCodeChallenge::from_code_verifier_sha256(&verifier));
    // openidconnect adds `openid` itself
    for scope in federation.config.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (authorize_url, _, _) = request.url();
    let stored = jhe_catalog::create_oidc_login_state(
        &app.pool,
        &jhe_catalog::NewOidcLoginState {
            state: &state,
            browser: &browser,
            issuer: &federation.config.issuer,
            nonce: &nonce,
            pkce_verifier: verifier.secret(),
            next: &next,
            lifetime: chrono::Duration::seconds(LOGIN_LIFETIME_SECONDS),
        },
    )
    .await;
    if let Err(error) = stored {
        return OAuthError::from(error).into_response();
    }
    let mut response = redirect(authorize_url.as_str());
    set_browser_cookie(&mut response, &browser, LOGIN_LIFETIME_SECONDS);
    response
}

/// `GET /accounts/oidc/callback/?code=…&state=…` (or `?error=…`): the upstream sends the browser back here.
async fn callback(
    State(app): State<AppState>,
    url: RequestUrl,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(federation) = app.federation.clone() else {
        return not_configured();
    };
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    // the sign-in in progress, spent now whatever follows (single use)
    let login = match (param(&pairs, "state"), browser_cookie(&headers)) {
        (Some(state), Some(browser)) => match jhe_catalog::take_oidc_login_state(&app.pool, state, &browser).await {
            Ok(login) => login,
            Err(error) => return OAuthError::from(error).into_response(),
        },
        _ => None,
    };
    let taken = login.is_some();
    let mut response = finish_callback(&app, &federation, &url, &headers, &pairs, login).await;
    // the binding cookie goes with the sign-in it bound; a callback that spent nothing (a forged or replayed URL)
    // leaves the browser's own sign-in in progress alone
    if taken {
        set_browser_cookie(&mut response, "", 0);
    }
    response
}

async fn finish_callback(
    app: &AppState,
    federation: &Federation,
    url: &RequestUrl,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    login: Option<jhe_catalog::OidcLoginState>,
) -> Response {
    // the provider's error is shown only for a sign-in this browser started (no text injection through forged URLs)
    if let Some(error) = param(pairs, "error")
        && login.is_some()
    {
        let description = param(pairs, "error_description").map(|d| format!(" ({d})")).unwrap_or_default();
        let status =
            if matches!(error, "access_denied" | "login_required" | "consent_required" | "interaction_required") {
                StatusCode::FORBIDDEN
            } else {
                StatusCode::BAD_GATEWAY
            };
        return error_page(
            status,
            &format!(
                "Sign-in with {} was not completed: the provider answered `{error}`{description}. Start again from \
                 the login page.",
                federation.config.name
            ),
        );
    }
    let Some(login) = login.filter(|login| login.issuer == federation.config.issuer) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in is invalid, expired or already used, or was started in another browser. Start again from \
             the login page.",
        );
    };
    let Some(code) = param(pairs, "code") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The provider sent no authorization code. Start again from the login page.",
        );
    };
    match sign_in(app, federation, url, code, &login).await {
        Ok(user_id) => {
            let previous = match current_session(app, headers).await {
                Ok(session) => session.map(|s| s.id),
                Err(error) => return error.into_response(),
            };
            start_session(app, previous, user_id, &login.next).await
        }
        Err(response) => *response,
    }
}

/// The verified upstream identity of a sign-in.
struct Upstream {
    issuer: String,
    subject: String,
    email: Option<String>,
    email_verified: bool,
}

/// Exchanges the code, verifies the ID token and finds the jhe user; every refusal is the page to show.
async fn sign_in(
    app: &AppState,
    federation: &Federation,
    url: &RequestUrl,
    code: &str,
    login: &jhe_catalog::OidcLoginState,
) -> Result<i64, Box<Response>> {
    let name = &federation.config.name;
    let metadata =
        federation.metadata(false).await.map_err(|error| {
            Box::new(federation.unavailable(&format!(
                "its configuration at {} could not be loaded ({error})",
                federation.config.issuer
            )))
        })?;
    let redirect_uri = RedirectUrl::new(format!("{}{CALLBACK_PATH}", url.base))
        .map_err(|_| Box::new(error_page(StatusCode::BAD_REQUEST, "This server's address is not a valid URL.")))?;
    let client = federation.client(&metadata, redirect_uri.clone());
    let request = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|_| Box::new(federation.unavailable("its configuration names no token endpoint")))?;
    let tokens = request
        .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
        .request_async(&federation.http)
        .await
        .map_err(|error| {
            let what = match &error {
                RequestTokenError::ServerResponse(response) => {
                    let description =
                        response.error_description().map(|d| format!(" ({d})")).unwrap_or_default();
                    format!("it refused the sign-in code: `{}`{description}", response.error())
                }
                other => format!("the code exchange failed ({})", error_chain(other)),
            };
            tracing::warn!(issuer = %federation.config.issuer, error = %what, "federated sign-in: code exchange failed");
            Box::new(federation.unavailable(&what))
        })?;
    let Some(id_token) = tokens.id_token() else {
        return Err(Box::new(federation.unavailable("its token response has no ID token")));
    };
    let nonce = Nonce::new(login.nonce.clone());
    let claims: CoreIdTokenClaims = match id_token.claims(&client.id_token_verifier(), &nonce) {
        Ok(claims) => claims.clone(),
        Err(ClaimsVerificationError::SignatureVerification(_)) => {
            // perhaps a key the cached JWKS does not have yet: re-discover once
            let fresh = federation.metadata(true).await.map_err(|error| {
                Box::new(federation.unavailable(&format!("its keys could not be loaded ({error})")))
            })?;
            let client = federation.client(&fresh, redirect_uri);
            id_token.claims(&client.id_token_verifier(), &nonce).cloned().map_err(|error| {
                tracing::warn!(issuer = %federation.config.issuer, error = %error, "federated sign-in: ID token refused");
                Box::new(federation.unavailable(&format!("its ID token did not verify ({error})")))
            })?
        }
        Err(error) => {
            tracing::warn!(issuer = %federation.config.issuer, error = %error, "federated sign-in: ID token refused");
            return Err(Box::new(federation.unavailable(&format!("its ID token did not verify ({error})"))));
        }
    };
    let mut upstream = Upstream {
        issuer: claims.issuer().as_str().to_owned(),
        subject: claims.subject().as_str().to_owned(),
        email: claims.email().map(|e| e.as_str().to_owned()),
        email_verified: claims.email_verified() == Some(true),
    };
    // the ID token may leave the email to userinfo (OIDC Core §5.4)
    if !(upstream.email.is_some() && upstream.email_verified)
        && let Ok(request) = client.user_info(tokens.access_token().clone(), Some(claims.subject().clone()))
    {
        let answer: Result<CoreUserInfoClaims, _> = request.request_async(&federation.http).await;
        match answer {
            Ok(info) => {
                if let Some(email) = info.email() {
                    upstream.email = Some(email.as_str().to_owned());
                    upstream.email_verified = info.email_verified() == Some(true);
                }
            }
            Err(error) => {
                tracing::warn!(issuer = %federation.config.issuer, error = %error_chain(&error), "federated sign-in: userinfo failed");
            }
        }
    }
    let forbidden = |message: String| Box::new(error_page(StatusCode::FORBIDDEN, &message));
    let email = match (&upstream.email, upstream.email_verified) {
        (Some(email), true) => email.clone(),
        (Some(email), false) => {
            return Err(forbidden(format!(
                "Your {name} account's email address {email} is not verified there. Verify it at {name}, or log in \
                 with your email and password."
            )));
        }
        (None, _) => {
            return Err(forbidden(format!(
                "Your {name} account did not share an email address, which is how jhe finds your account. Log in \
                 with your email and password instead."
            )));
        }
    };
    let user = match jhe_catalog::find_linked_user(&app.pool, &upstream.issuer, &upstream.subject).await {
        Ok(Some(user)) => user,
        Ok(None) => link_by_email(app, &upstream, &email, name).await?,
        Err(error) => return Err(Box::new(OAuthError::from(error).into_response())),
    };
    may_sign_in(&user)?;
    let recorded = async {
        jhe_catalog::touch_federated_identity(&app.pool, &upstream.issuer, &upstream.subject).await?;
        jhe_catalog::record_login(&app.pool, user.id, None).await
    };
    if let Err(error) = recorded.await {
        return Err(Box::new(OAuthError::from(error).into_response()));
    }
    tracing::info!(user = user.id, issuer = %upstream.issuer, "federated sign-in");
    Ok(user.id)
}

/// Refuses (403) a user federated login must not sign in: deactivated, or not a practitioner.
fn may_sign_in(user: &jhe_catalog::FederatedUser) -> Result<(), Box<Response>> {
    let refusal = if !user.is_active {
        format!("The jhe account {} is deactivated.", user.email)
    } else if !user.is_practitioner {
        format!(
            "The jhe account {} is not a practitioner account; single sign-on is for practitioners. Patients sign \
             in through their app.",
            user.email
        )
    } else {
        return Ok(());
    };
    Err(Box::new(error_page(StatusCode::FORBIDDEN, &refusal)))
}

/// The first sign-in of an upstream account: the active practitioner with this (verified) email, linked to the
/// account from now on. A user already linked to another account of the same issuer is refused (that is the case of
/// an upstream account that took over someone's email).
async fn link_by_email(
    app: &AppState,
    upstream: &Upstream,
    email: &str,
    name: &str,
) -> Result<jhe_catalog::FederatedUser, Box<Response>> {
    let forbidden = |message: String| Box::new(error_page(StatusCode::FORBIDDEN, &message));
    let internal = |error: jhe_catalog::Error| Box::new(OAuthError::from(error).into_response());
    let Some(user) = jhe_catalog::find_user_for_federation(&app.pool, email).await.map_err(internal)? else {
        return Err(forbidden(format!(
            "No jhe account has the email address {email}. An administrator must create your practitioner account \
             first."
        )));
    };
    // checked before linking, so a refused user gets no link
    may_sign_in(&user)?;
    match jhe_catalog::link_federated_identity(&app.pool, &upstream.issuer, &upstream.subject, user.id, email)
        .await
        .map_err(internal)?
    {
        jhe_catalog::LinkOutcome::Linked => {
            tracing::info!(user = user.id, issuer = %upstream.issuer, "linked an upstream account by verified email");
            Ok(user)
        }
        jhe_catalog::LinkOutcome::UserLinkedElsewhere => Err(forbidden(format!(
            "The jhe account {} is already linked to another {name} account. Sign in with that account, or ask an \
             administrator.",
            user.email
        ))),
    }
}
