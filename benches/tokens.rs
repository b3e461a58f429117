//! Micro-benchmarks of the hot path and the token primitives, per signing
//! mode (`HS256`, `ES256`, `EdDSA`):
//! - `bearer_check/<mode>`: the whole Bearer extractor path, from the
//!   `Authorization` header value to the claims, for a token this thread has
//!   verified before (what an app's repeated calls cost);
//! - `bearer_check_first_use/<mode>`: the same for a token never seen before
//!   (parse, signature, claims, revocation set);
//! - `sign_access_token/<mode>`: what `/login` and `/refresh` spend on the JWT;
//! - `refresh_token_verify` / `refresh_token_mint`: the refresh-token MAC
//!   (the same in every mode).
//!
//! `cargo bench --bench tokens` (or a filter: `cargo bench --bench tokens -- ES256`)

use std::hint::black_box;
use std::time::Duration;

use actix_web::http::header::HeaderValue;
use auth_api::auth::asymmetric::{Algorithm, AsymmetricKeys, SigningKey};
use auth_api::auth::refresh;
use auth_api::auth::{AccessTokens, Keyring, RevocationSet, Role};
use auth_api::http::extract::check_bearer;
use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use secrecy::SecretString;
use uuid::Uuid;

fn keyring() -> Keyring {
    Keyring::new(
        &SecretString::from("benchmark-secret-0123456789-0123456789".to_owned()),
        &[],
    )
}

fn tokens(alg: Option<Algorithm>) -> AccessTokens {
    let tokens = AccessTokens::new(
        keyring(),
        "auth-api",
        "mobile",
        Duration::from_secs(30),
        Duration::from_secs(900),
    );
    match alg {
        None => tokens,
        Some(alg) => {
            let pem = SigningKey::generate_pem(alg).expect("a key");
            let key = SigningKey::from_pem(alg, &pem).expect("a key");
            tokens.with_asymmetric_keys(AsymmetricKeys::new(key, Vec::new()).expect("keys"))
        }
    }
}

fn bench(c: &mut Criterion) {
    let now = Utc::now();
    // A realistic revocation set: a thousand sessions revoked in the last minutes.
    let revocations = RevocationSet::new(Duration::from_secs(935));
    let revoked: Vec<_> = (0..1000)
        .map(|_| (Uuid::new_v4(), Uuid::new_v4(), now))
        .collect();
    revocations.insert_many(&revoked, now);

    for alg in [None, Some(Algorithm::Es256), Some(Algorithm::EdDsa)] {
        let tokens = tokens(alg);
        let mode = tokens.algorithm();
        let issued = tokens
            .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User, false, now)
            .expect("signs");
        let header = HeaderValue::from_str(&format!("Bearer {}", issued.token)).expect("a header");
        c.bench_function(&format!("bearer_check/{mode}"), |b| {
            b.iter(|| check_bearer(Some(black_box(&header)), &tokens, &revocations).expect("valid"))
        });

        // A token seen for the first time on this thread: every check from scratch.
        c.bench_function(&format!("bearer_check_first_use/{mode}"), |b| {
            b.iter_batched(
                || {
                    let token = tokens
                        .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User, false, now)
                        .expect("signs")
                        .token;
                    HeaderValue::from_str(&format!("Bearer {token}")).expect("a header")
                },
                |header| check_bearer(Some(&header), &tokens, &revocations).expect("valid"),
                criterion::BatchSize::SmallInput,
            )
        });

        c.bench_function(&format!("sign_access_token/{mode}"), |b| {
            b.iter(|| {
                tokens
                    .issue(black_box(Uuid::nil()), Uuid::nil(), Role::User, false, now)
                    .expect("signs")
            })
        });
    }

    let keys = keyring();
    let session = Uuid::new_v4();
    let token = refresh::mint(&keys, session, 42);
    c.bench_function("refresh_token_verify", |b| {
        b.iter(|| refresh::verify(&keys, black_box(&token)).expect("valid"))
    });
    c.bench_function("refresh_token_mint", |b| {
        b.iter(|| refresh::mint(&keys, black_box(session), 43))
    });

    // The revocation set at a busy time: 100k entries. An insert must not
    // cost the size of the set (it did when the set was copied per insert),
    // and a lookup must stay what the Bearer check can afford.
    let big = RevocationSet::new(Duration::from_secs(935));
    let user = Uuid::new_v4();
    let filled: Vec<_> = (0..100_000).map(|_| (Uuid::new_v4(), user, now)).collect();
    big.insert_many(&filled, now);
    c.bench_function("revocations_insert/100k", |b| {
        b.iter(|| big.insert(black_box(Uuid::new_v4()), user, now))
    });
    let present = filled[50_000].0;
    c.bench_function("revocations_lookup/100k", |b| {
        b.iter(|| big.is_revoked(black_box(&present)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
