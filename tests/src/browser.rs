//! A browser for jhe's HTML pages (login, consent, accounts, federated sign-in) and the OAuth requests around them,
//! shared by the identity tests: redirects are followed by the test, cookies are kept per origin.

use crate::TestServer;
use reqwest::Url;
use serde_json::{Value, json};
use std::collections::HashMap;

/// An HTTP client that does not follow redirects: the tests read each Location themselves.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

/// HTML-escaped attribute text back to text.
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#x27;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The hidden inputs of a page's forms.
pub fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((unescape(name), unescape(value)))
        })
        .collect()
}

/// A response's Location header, as sent (empty when there is none).
pub fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// A page as the browser got it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    /// The Location header as sent (often a path).
    pub location: String,
    pub retry_after: Option<String>,
    pub body: String,
    /// The URL the page was requested at.
    pub url: Url,
}

impl Page {
    /// The Location header as an absolute URL.
    pub fn next_url(&self) -> String {
        self.url.join(&self.location).map(|u| u.to_string()).unwrap_or_default()
    }

    /// The hidden inputs of the page's forms.
    pub fn form(&self) -> Vec<(String, String)> {
        hidden_inputs(&self.body)
    }
}

/// A cookie of a jar, by name: its value and path.
type Jar = HashMap<String, (String, String)>;

fn origin(url: &Url) -> String {
    url.origin().ascii_serialization()
}

/// A browser: cookies per origin (scheme, host and port, so two servers' `jhe_session` stay apart as they would on
/// two hosts), with their paths and Max-Age=0 deletions; every cookie jhe sets must be HttpOnly, Secure and
/// SameSite=Lax. Redirects are followed by the test.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    /// Where relative paths point (`Browser::at`); without it URLs must be absolute.
    base: Option<Url>,
    jars: HashMap<String, Jar>,
    /// Sent as X-Forwarded-For (the client address behind a trusted proxy).
    pub forwarded_for: Option<String>,
    /// Sent with every request (e.g. a forged `X-Forwarded-Host`).
    pub headers: Vec<(String, String)>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// A browser that is given absolute URLs.
    pub fn new() -> Self {
        Browser { http: http(), base: None, jars: HashMap::new(), forwarded_for: None, headers: Vec::new() }
    }

    /// A browser whose paths are on `server`.
    pub fn at(server: &TestServer) -> Self {
        Browser { base: Some(Url::parse(&server.base).expect("server URL")), ..Self::new() }
    }

    /// `path` (a path on the base, or an absolute URL) as a URL.
    pub fn url(&self, path: &str) -> Url {
        match &self.base {
            Some(base) => base.join(path),
            None => Url::parse(path),
        }
        .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The value of cookie `name` kept for the origin of `base`.
    pub fn cookie(&self, base: &str, name: &str) -> Option<String> {
        let url = Url::parse(base).unwrap();
        self.origin_cookie(&url, name)
    }

    /// The `jhe_session` cookie of the base's origin.
    pub fn session(&self) -> Option<String> {
        self.origin_cookie(self.base.as_ref().expect("a browser at a server"), "jhe_session")
    }

    fn origin_cookie(&self, url: &Url, name: &str) -> Option<String> {
        self.jars.get(&origin(url))?.get(name).map(|(value, _)| value.clone())
    }

    fn cookie_header(&self, url: &Url) -> Option<String> {
        let jar = self.jars.get(&origin(url))?;
        let cookies: Vec<String> = jar
            .iter()
            .filter(|(_, (_, path))| url.path().starts_with(path.as_str()))
            .map(|(name, (value, _))| format!("{name}={value}"))
            .collect();
        (!cookies.is_empty()).then(|| cookies.join("; "))
    }

    fn keep_cookies(&mut self, url: &Url, response: &reqwest::Response) {
        let jar = self.jars.entry(origin(url)).or_default();
        for header in response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            assert!(
                header.contains("HttpOnly") && header.contains("Secure") && header.contains("SameSite=Lax"),
                "{header}"
            );
            let mut parts = header.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else { continue };
            let mut path = "/".to_owned();
            let mut expired = value.is_empty();
            for attribute in parts {
                if let Some(p) = attribute.strip_prefix("Path=") {
                    path = p.to_owned();
                }
                if attribute == "Max-Age=0" {
                    expired = true;
                }
            }
            if expired {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), (value.to_owned(), path));
            }
        }
    }

    async fn send(&mut self, mut request: reqwest::RequestBuilder, url: Url) -> Page {
        if let Some(cookies) = self.cookie_header(&url) {
            request = request.header("cookie", cookies);
        }
        if let Some(forwarded) = &self.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        self.keep_cookies(&url, &response);
        let status = response.status().as_u16();
        let location = location(&response);
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.text().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        Page { status, location, retry_after, body, url }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let url = self.url(path);
        self.send(self.http.get(url.clone()), url).await
    }

    pub async fn post(&mut self, path: &str, form: &[(String, String)]) -> Page {
        let url = self.url(path);
        self.send(self.http.post(url.clone()).form(form), url).await
    }

    /// Opens the form at `path` and posts it back to its action with `fields` added to its hidden inputs.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let action = page.body.split("<form method=\"post\" action=\"").nth(1).and_then(|rest| rest.split('"').next());
        let action = page.url.join(&unescape(action.expect("a form"))).unwrap();
        let mut form = page.form();
        form.extend(fields.iter().map(|(name, value)| (name.to_string(), value.to_string())));
        self.post(action.as_str(), &form).await
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Page {
        self.submit("/accounts/login/", &[("email", email), ("password", password)]).await
    }

    /// Logs out the way a user does: the logout page's form, posted with its CSRF token.
    pub async fn logout(&mut self) -> Page {
        self.submit("/accounts/logout/", &[]).await
    }

    /// From an authorization URL through the server's password login page (as `email`, when there is no session)
    /// and its consent page (allow or deny, when the client asks for consent) to the redirect back to the client;
    /// returns that redirect as an absolute URL.
    pub async fn authorize(&mut self, authorize_url: &str, email: &str, allow: bool) -> Url {
        let mut page = self.get(authorize_url).await;
        if page.status == 302 && page.location.starts_with("/accounts/login/") {
            let login = self.get(&page.next_url()).await;
            assert_eq!(login.status, 200, "{}", login.body);
            // the servers these tests sign in to with a password have no upstream of their own
            assert!(!login.body.contains("Sign in with"), "a server without an upstream: {}", login.body);
            let mut form = login.form();
            assert!(form.iter().any(|(name, _)| name == "csrfmiddlewaretoken"), "{form:?}");
            form.push(("email".into(), email.into()));
            form.push(("password".into(), jhe_catalog::SEED_PASSWORD.into()));
            let before = self.origin_cookie(&login.url, "jhe_session");
            let logged_in = self.post(login.url.join("/accounts/login/").unwrap().as_str(), &form).await;
            assert_eq!(logged_in.status, 302, "login as {email}: {}", logged_in.body);
            assert_ne!(self.origin_cookie(&login.url, "jhe_session"), before, "a login starts a new session");
            page = self.get(&logged_in.next_url()).await;
        }
        if page.status == 200 {
            assert!(page.body.contains("Authorize access"), "{}", page.body);
            let mut form = page.form();
            form.push(if allow { ("allow".into(), "Authorize".into()) } else { ("deny".into(), "Cancel".into()) });
            page = self.post(page.url.join("/o/authorize/").unwrap().as_str(), &form).await;
        }
        assert_eq!(page.status, 302, "{}", page.body);
        Url::parse(&page.next_url()).unwrap()
    }
}

/// An authorization-code request for `client_id` at `server`'s authorize endpoint, with PKCE S256 (`challenge`) and
/// `state` when given.
pub fn authorize_url(
    server: &TestServer,
    client_id: &str,
    redirect_uri: &str,
    scope: &str,
    state: Option<&str>,
    challenge: &str,
) -> Url {
    let mut params = vec![("response_type", "code"), ("client_id", client_id), ("redirect_uri", redirect_uri)];
    params.push(("scope", scope));
    params.extend(state.map(|state| ("state", state)));
    params.extend([("code_challenge", challenge), ("code_challenge_method", "S256")]);
    Url::parse_with_params(&format!("{}/o/authorize/", server.base), &params).unwrap()
}

/// A form POST to one of `server`'s endpoints (not following redirects): the status and the JSON body (Null when
/// the body is not JSON).
pub async fn form_post(
    server: &TestServer,
    path: &str,
    authorization: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = http().post(format!("{}{path}", server.base)).form(form);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

impl TestServer {
    /// Registers a confidential authorization-code client that asks for consent, with `secret` and one redirect
    /// URI.
    pub async fn add_confidential_client(&self, client_id: &str, secret: &str, name: &str, redirect_uri: &str) {
        let hash = jhe_catalog::passwords::hash_password(secret).unwrap();
        sqlx::query(
            "INSERT INTO oauth_clients (client_id, client_secret_hash, name, client_type, grant_type, redirect_uris,
                                        skip_authorization, algorithm)
             VALUES ($1, $2, $3, 'confidential', 'authorization-code', $4, FALSE, 'RS256')",
        )
        .bind(client_id)
        .bind(hash)
        .bind(name)
        .bind(redirect_uri)
        .execute(&self.db.pool)
        .await
        .unwrap();
    }

    /// The token response of a client-credentials grant with a practitioner API key (used verbatim as the Basic
    /// credentials, §7.5), asking for `scope`; it must succeed.
    pub async fn client_credentials(&self, key: &str, scope: Option<&str>) -> Value {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let (status, body) = form_post(self, "/o/token/", Some(&format!("Basic {key}")), &form).await;
        assert_eq!(status, 200, "{body:?}");
        body
    }

    /// The access token of a client-credentials grant with a practitioner API key (see `client_credentials`).
    pub async fn client_credentials_token(&self, key: &str, scope: Option<&str>) -> String {
        let body = self.client_credentials(key, scope).await;
        body["access_token"].as_str().unwrap_or_else(|| panic!("{body}")).to_owned()
    }

    /// An authorization code exchanged at the token endpoint by a public client (PKCE): the status and the body.
    pub async fn exchange_code(&self, client_id: &str, code: &str, redirect_uri: &str, verifier: &str) -> (u16, Value) {
        let form = [
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        form_post(self, "/o/token/", None, &form).await
    }

    /// Issues an invitation of `patient` to the seeded CareX app; returns (invitation id, raw token).
    pub async fn invite(&self, practitioner_token: &str, patient: i64) -> (i64, String) {
        let carex = self.id_of("oauth_clients", "client_id", "carex").await;
        let issued = self
            .post(
                "/api/v1/invitation",
                practitioner_token,
                json!({"patient_id": patient, "client_id": carex, "send_email": false}),
            )
            .await;
        assert_eq!(issued.status, 201, "{:?}", issued.body);
        (issued.body["id"].as_i64().unwrap(), issued.body["token"].as_str().unwrap().to_owned())
    }

    /// The grant of a redeemed invitation (its `client_id`, `code` and `redirect_uri`) exchanged with `verifier`:
    /// the status and the body.
    pub async fn exchange_grant(&self, grant: &Value, verifier: &str) -> (u16, Value) {
        let field = |name: &str| grant[name].as_str().unwrap_or_else(|| panic!("{name}: {grant}"));
        self.exchange_code(field("client_id"), field("code"), field("redirect_uri"), verifier).await
    }
}
