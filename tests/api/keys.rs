//! Signing modes and the key set: HS256 (the default), ES256 and EdDSA; the
//! keys `/.well-known/jwks.json` publishes; an independent verifier
//! (`jsonwebtoken`) checking our tokens with nothing but the key set; and the
//! attack table in every mode.

use std::path::PathBuf;

use auth_api::auth::asymmetric::{Algorithm, SigningKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{JWT_SECRET, Login, TestApp, decode_claims, decode_header, spawn_app_with};

/// A signing mode under test, with the private key the app signs with.
pub struct Mode {
    pub alg: Option<Algorithm>,
    /// The PEM of the app's private key (ES256/EdDSA), in `_dir`.
    pub key: Option<SigningKey>,
    pub key_file: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Mode {
    pub fn name(&self) -> &'static str {
        self.alg.map_or("HS256", Algorithm::name)
    }

    pub fn hs256() -> Self {
        Self {
            alg: None,
            key: None,
            key_file: None,
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    /// An asymmetric mode with a fresh private key written to a PEM file.
    pub fn asymmetric(alg: Algorithm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (key, path) = write_key(&dir, "current.pem", alg);
        Self {
            alg: Some(alg),
            key: Some(key),
            key_file: Some(path),
            _dir: dir,
        }
    }

    pub fn all() -> [Self; 3] {
        [
            Self::hs256(),
            Self::asymmetric(Algorithm::Es256),
            Self::asymmetric(Algorithm::EdDsa),
        ]
    }

    /// The environment that selects this mode.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        match (self.alg, &self.key_file) {
            (Some(alg), Some(path)) => vec![
                ("JWT_ALGORITHM", alg.name().to_owned()),
                ("JWT_PRIVATE_KEY_FILE", path.display().to_string()),
            ],
            _ => vec![],
        }
    }

    pub async fn spawn(&self, extra: &[(&str, &str)]) -> TestApp {
        let vars = self.vars();
        let mut all: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        all.extend_from_slice(extra);
        spawn_app_with(&all).await
    }

    /// The kid of the key the app signs with.
    pub fn kid(&self) -> String {
        match &self.key {
            Some(key) => key.public().kid().to_owned(),
            None => auth_api::auth::keys::key_id(JWT_SECRET.as_bytes()),
        }
    }

    /// A compact JWS with this header and claims, signed as the app signs.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        match &self.key {
            Some(key) => sign_with(key, header, claims),
            None => hs256(JWT_SECRET.as_bytes(), header, claims),
        }
    }
}

/// Writes a new private key of `alg` into `dir/name`; returns it and the path.
pub fn write_key(dir: &tempfile::TempDir, name: &str, alg: Algorithm) -> (SigningKey, PathBuf) {
    let pem = SigningKey::generate_pem(alg).unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, &pem).unwrap();
    (SigningKey::from_pem(alg, &pem).unwrap(), path)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

pub fn sign_with(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature.as_ref()))
}

fn hs256(key: &[u8], header: &Value, claims: &Value) -> String {
    let input = signing_input(header, claims);
    let mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap()
        .chain_update(&input)
        .finalize()
        .into_bytes();
    format!("{input}.{}", b64(&mac))
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

async fn jwks(app: &TestApp) -> reqwest::Response {
    app.client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
}

async fn assert_invalid_token(app: &TestApp, token: &str, case: &str) {
    let response = app.me(token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\""),
        "{case}: {challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{case}");
}

/// Verifies `token` the way a backend would, with `jsonwebtoken` and nothing
/// but the key set: the key by `kid`, only that key's `alg`, `iss`, `aud`.
fn verify_like_a_backend(jwks: &Value, token: &str) -> Result<Value, String> {
    use jsonwebtoken::jwk::JwkSet;
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| e.to_string())?;
    let header = decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("unknown kid")?;
    let alg = match jwk.common.key_algorithm {
        Some(jsonwebtoken::jwk::KeyAlgorithm::ES256) => jsonwebtoken::Algorithm::ES256,
        Some(jsonwebtoken::jwk::KeyAlgorithm::EdDSA) => jsonwebtoken::Algorithm::EdDSA,
        other => return Err(format!("unexpected alg {other:?}")),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&["auth-api"]);
    validation.set_audience(&["mobile"]);
    validation.leeway = 30;
    decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn with_hs256_the_key_set_is_empty_and_cacheable() {
    let app = spawn_app_with(&[]).await;
    let response = jwks(&app).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=300",
        "not the default no-store"
    );
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"keys": []}));
    // HS256 stays the default, its header unchanged.
    let login = app.new_login().await;
    assert_eq!(
        decode_header(&login.access_token),
        json!({"typ": "JWT", "alg": "HS256", "kid": Mode::hs256().kid()})
    );
}

#[tokio::test]
async fn head_on_the_key_set_answers_like_get_without_a_body() {
    let app = Mode::asymmetric(Algorithm::Es256).spawn(&[]).await;
    let response = app
        .client
        .head(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    assert!(response.bytes().await.unwrap().is_empty());
    let response = app
        .client
        .post(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn es256_and_eddsa_tokens_name_their_key_and_verify_with_the_key_set_alone() {
    for mode in [
        Mode::asymmetric(Algorithm::Es256),
        Mode::asymmetric(Algorithm::EdDsa),
    ] {
        let app = mode.spawn(&[]).await;
        let login = app.new_login().await;
        assert_eq!(
            decode_header(&login.access_token),
            json!({"typ": "JWT", "alg": mode.name(), "kid": mode.kid()}),
            "{}",
            mode.name()
        );
        assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);

        let set: Value = jwks(&app).await.json().await.unwrap();
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let key = &keys[0];
        assert_eq!(key["kid"], mode.kid());
        assert_eq!(key["alg"], mode.name());
        assert_eq!(key["use"], "sig");
        match mode.alg.unwrap() {
            Algorithm::Es256 => {
                assert_eq!((&key["kty"], &key["crv"]), (&json!("EC"), &json!("P-256")));
                assert_eq!(key["y"].as_str().unwrap().len(), 43);
            }
            Algorithm::EdDsa => {
                assert_eq!(
                    (&key["kty"], &key["crv"]),
                    (&json!("OKP"), &json!("Ed25519"))
                );
                assert!(key.get("y").is_none());
            }
        }
        assert!(key.get("d").is_none(), "never the private key");
        assert_eq!(key["x"].as_str().unwrap().len(), 43);

        let claims = verify_like_a_backend(&set, &login.access_token).unwrap();
        assert_eq!(claims, decode_claims(&login.access_token));
        // Refresh works and the new token is signed the same way.
        let next = app.refresh_ok(&login).await;
        assert!(verify_like_a_backend(&set, &next.access_token).is_ok());
    }
}

#[tokio::test]
async fn extra_public_keys_are_accepted_and_published_after_the_signing_key() {
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        let mode = Mode::asymmetric(alg);
        let dir = tempfile::tempdir().unwrap();
        // One announced key given as a public key, one retired key given as
        // its private key file (its public half is used).
        let (next, next_private) = write_key(&dir, "next-private.pem", alg);
        let next_public = dir.path().join("next.pub.pem");
        let status = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&next_private)
            .arg("-out")
            .arg(&next_public)
            .status();
        let next_file = match status {
            Ok(s) if s.success() => next_public,
            _ => next_private, // no openssl here: the private file works too
        };
        let (old, old_file) = write_key(&dir, "old.pem", alg);
        let files = format!("{},{}", next_file.display(), old_file.display());
        let app = mode
            .spawn(&[("JWT_EXTRA_PUBLIC_KEY_FILES", files.as_str())])
            .await;

        let set: Value = jwks(&app).await.json().await.unwrap();
        let kids: Vec<&str> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(
            kids,
            [mode.kid().as_str(), next.public().kid(), old.public().kid()],
            "{alg}"
        );

        let login = app.new_login().await;
        let claims = decode_claims(&login.access_token);
        for key in [&next, &old] {
            let header = json!({"alg": alg.name(), "typ": "JWT", "kid": key.public().kid()});
            let token = sign_with(key, &header, &claims);
            assert_eq!(app.me(&token).await.status(), StatusCode::OK, "{alg}");
        }
    }
}

#[tokio::test]
async fn without_a_key_file_a_private_key_is_generated_once_into_the_data_folder() {
    for alg in [Algorithm::Es256, Algorithm::EdDsa] {
        // SQLite even on a PostgreSQL run: the data folder is the database's.
        let folder = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/auth.db", folder.path().display());
        let app = spawn_app_with(&[("JWT_ALGORITHM", alg.name()), ("DATABASE_URL", &url)]).await;
        let path = folder.path().join(alg.key_file_name());
        let pem = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key = SigningKey::from_pem(alg, &pem).unwrap();
        let login = app.new_login().await;
        assert_eq!(
            decode_header(&login.access_token)["kid"],
            key.public().kid()
        );
    }
}

#[tokio::test]
async fn a_bad_key_file_stops_the_start_naming_the_variable_not_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-key.pem");
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "JWT_SECRET=hunter2-hunter2-hunter2-hunter2").unwrap();
    let (_, ed_key) = write_key(&dir, "ed.pem", Algorithm::EdDsa);
    let (_, es_key) = write_key(&dir, "es.pem", Algorithm::Es256);
    let cases = [
        ("JWT_PRIVATE_KEY_FILE", &missing, "ES256"),
        ("JWT_PRIVATE_KEY_FILE", &not_a_key, "ES256"),
        ("JWT_PRIVATE_KEY_FILE", &ed_key, "ES256"),
        ("JWT_EXTRA_PUBLIC_KEY_FILES", &missing, "EdDSA"),
        ("JWT_EXTRA_PUBLIC_KEY_FILES", &es_key, "EdDSA"),
    ];
    for (var, path, alg) in cases {
        let path = path.display().to_string();
        let own_key = if alg == "ES256" { &es_key } else { &ed_key };
        let own_key = own_key.display().to_string();
        let mut vars = vec![
            (
                "DATABASE_URL",
                format!("sqlite://{}/auth.db", dir.path().display()),
            ),
            ("BIND_ADDR", "127.0.0.1:0".to_owned()),
            ("JWT_SECRET", JWT_SECRET.to_owned()),
            ("JWT_ALGORITHM", alg.to_owned()),
            ("JWT_PRIVATE_KEY_FILE", own_key),
        ];
        vars.retain(|(k, _)| *k != var);
        vars.push((var, path.clone()));
        let config = auth_api::config::Config::from_lookup(|k| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.clone())
        })
        .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let error = auth_api::startup::Application::build_with_listener(config, listener)
            .await
            .map(|_| ())
            .expect_err(var);
        let message = format!("{error:#}");
        assert!(message.contains(var), "{message}");
        assert!(!message.contains(&path), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}

/// The attack table, in every mode: tokens that try to choose their own key
/// or algorithm. All `401 invalid_token`, and the real session is untouched.
#[tokio::test]
async fn key_and_algorithm_confusion_is_refused_in_every_mode() {
    for mode in Mode::all() {
        let app = mode.spawn(&[]).await;
        let login: Login = app.new_login().await;
        let claims = decode_claims(&login.access_token);
        let name = mode.name();
        let our_header = json!({"alg": name, "typ": "JWT", "kid": mode.kid()});

        // Sanity: a token we sign as the app does is accepted, so each refusal
        // below is the attack's, not the forging's.
        let genuine = mode.sign(&our_header, &claims);
        assert_eq!(app.me(&genuine).await.status(), StatusCode::OK, "{name}");

        let set: Value = jwks(&app).await.json().await.unwrap();
        let mut cases: Vec<(String, String)> = Vec::new();

        // alg confusion: HS256 with the public key (as published, as PEM, as
        // raw bytes) or the refresh secret as the HMAC key, our kid.
        let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": mode.kid()});
        let mut hmac_keys: Vec<(&str, Vec<u8>)> = vec![
            ("the JWKS text", set.to_string().into_bytes()),
            (
                "JWT_SECRET in an asymmetric mode",
                JWT_SECRET.as_bytes().to_vec(),
            ),
        ];
        if let Some(key) = &mode.key {
            let jwk = key.public().jwk();
            hmac_keys.push(("the x coordinate", URL_SAFE_NO_PAD.decode(&jwk.x).unwrap()));
            hmac_keys.push(("the JWK x text", jwk.x.clone().into_bytes()));
            let pem = std::fs::read_to_string(mode.key_file.as_ref().unwrap()).unwrap();
            let public_pem =
                auth_api::auth::asymmetric::VerifyingKey::from_pem(key.public().algorithm(), &pem)
                    .unwrap();
            hmac_keys.push(("the public key's kid", public_pem.kid().as_bytes().to_vec()));
            hmac_keys.push(("the private key file", pem.into_bytes()));
        }
        for (what, key) in &hmac_keys {
            if mode.key.is_none() && what.starts_with("JWT_SECRET") {
                continue; // that is the genuine HS256 token
            }
            cases.push((
                format!("HS256 signed with {what}"),
                hs256(key, &hs_header, &claims),
            ));
        }

        if mode.key.is_some() {
            // A genuine HS256 token of the same JWT_SECRET, as the HS256 mode
            // would issue it: the secret is for refresh tokens only here.
            let kid = auth_api::auth::keys::key_id(JWT_SECRET.as_bytes());
            let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
            cases.push((
                "HS256 under JWT_SECRET with its own kid".into(),
                hs256(JWT_SECRET.as_bytes(), &header, &claims),
            ));
        }

        // none, with and without a signature.
        let none = json!({"alg": "none", "typ": "JWT", "kid": mode.kid()});
        cases.push((
            "alg none".into(),
            format!("{}.", signing_input(&none, &claims)),
        ));
        let genuine_signature = genuine.rsplit('.').next().unwrap();
        cases.push((
            "alg none with a genuine signature".into(),
            format!("{}.{genuine_signature}", signing_input(&none, &claims)),
        ));

        // A foreign key of every algorithm, naming our kid; and the same
        // foreign key carried in the header (jwk) or pointed to (jku, x5u).
        for alg in [Algorithm::Es256, Algorithm::EdDsa] {
            let dir = tempfile::tempdir().unwrap();
            let (foreign, _) = write_key(&dir, "foreign.pem", alg);
            let header = json!({"alg": alg.name(), "typ": "JWT", "kid": mode.kid()});
            cases.push((
                format!("{alg} foreign key with our kid"),
                sign_with(&foreign, &header, &claims),
            ));
            let jwk = foreign.public().jwk();
            let mut embedded = json!({"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x});
            if let Some(y) = &jwk.y {
                embedded["y"] = json!(y);
            }
            for (what, extra) in [
                ("jwk", embedded.clone()),
                ("jku", json!("https://attacker.example/jwks.json")),
                ("x5u", json!("https://attacker.example/key.pem")),
            ] {
                for kid in [mode.kid(), foreign.public().kid().to_owned()] {
                    let header = with(
                        json!({"alg": alg.name(), "typ": "JWT", "kid": kid}),
                        what,
                        extra.clone(),
                    );
                    cases.push((
                        format!("{alg} foreign key in a {what} header, kid {kid}"),
                        sign_with(&foreign, &header, &claims),
                    ));
                }
                let header = with(
                    json!({"alg": alg.name(), "typ": "JWT"}),
                    what,
                    extra.clone(),
                );
                cases.push((
                    format!("{alg} foreign key in a {what} header, no kid"),
                    sign_with(&foreign, &header, &claims),
                ));
            }
        }

        // Wrong alg for the mode, with our kid and the mode's genuine signature.
        for alg in [
            "HS256", "HS384", "ES256", "ES384", "EdDSA", "RS256", "PS256", "Ed25519",
        ] {
            if alg == name {
                continue;
            }
            let header = json!({"alg": alg, "typ": "JWT", "kid": mode.kid()});
            cases.push((
                format!("alg {alg} in {name} mode"),
                format!("{}.{genuine_signature}", signing_input(&header, &claims)),
            ));
        }
        // The same header as ours, with an alg of another spelling.
        let lower = with(our_header.clone(), "alg", json!(name.to_lowercase()));
        cases.push(("alg in lowercase".into(), mode.sign(&lower, &claims)));

        for (case, token) in &cases {
            assert_invalid_token(&app, token, &format!("{name}: {case}")).await;
        }
        assert_eq!(
            app.me(&login.access_token).await.status(),
            StatusCode::OK,
            "{name}: the real session is untouched"
        );
    }
}
