//! A login flood: 300 concurrent logins for one account answer only 200 or
//! 503, and `/me` keeps answering while they are processed (hashing runs on
//! its own threads, never on the async workers that serve `/me`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_logins_get_200_or_503_and_me_keeps_answering() {
    let app = Arc::new(spawn_app_with(&[("PASSWORD_HASH_QUEUE", "200")]).await);
    let login = app.new_login().await;
    let finished = Arc::new(AtomicUsize::new(0));

    let flood: Vec<_> = (0..300)
        .map(|_| {
            let (app, finished, email) = (app.clone(), finished.clone(), login.email.clone());
            tokio::spawn(async move {
                let status = app.login(&email, PASSWORD).await.status();
                finished.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();

    // While the flood is being hashed, the Bearer path answers at once.
    while app.state.hasher.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    for _ in 0..50 {
        assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
    }
    let done_when_me_finished = finished.load(Ordering::SeqCst);
    assert!(
        done_when_me_finished < 300,
        "50 /me calls finished before the 300 logins did (only {done_when_me_finished} were done)"
    );

    let mut counts = std::collections::BTreeMap::new();
    for task in flood {
        *counts.entry(task.await.unwrap().as_u16()).or_insert(0) += 1;
    }
    assert!(counts.keys().all(|s| *s == 200 || *s == 503), "{counts:?}");
    assert!(counts.get(&200).copied().unwrap_or(0) >= 200, "{counts:?}");
}
