//! `chat-server doctor`: checks the configuration and every service the server needs, and
//! says what is wrong in plain words with the fix. Exits non-zero when anything fails.

use std::time::Duration;

use chat_core::{
    ChannelLayer, GroupName, LayerMessage, MessageStore, RedisChannelLayer, RedisLayerConfig,
};

use crate::cli::Settings;
use crate::config::ServerConfig;

/// The outcome of one check.
enum Check {
    Ok(String),
    Warn(String),
    Fail(String, String),
}

fn print(name: &str, check: &Check) {
    match check {
        Check::Ok(what) => println!("ok    {name}: {what}"),
        Check::Warn(what) => println!("warn  {name}: {what}"),
        Check::Fail(what, fix) => {
            println!("FAIL  {name}: {what}");
            println!("      fix: {fix}");
        }
    }
}

async fn check_store(config: &ServerConfig) -> Check {
    let url = chat_store::redact_url(&config.database_url);
    let opened = tokio::time::timeout(
        Duration::from_secs(10),
        chat_store::Store::open(chat_store::StoreConfig::new(&config.database_url)),
    )
    .await;
    match opened {
        Ok(Ok(store)) => match store.ping().await {
            Ok(()) => Check::Ok(format!("{url} is reachable and its migrations are applied")),
            Err(e) => Check::Fail(
                format!("{url} opened but does not answer: {e}"),
                "check the database server's logs and disk space".into(),
            ),
        },
        Ok(Err(e)) => Check::Fail(
            format!("cannot open the database {url}: {e}"),
            "set DATABASE_URL (or --database-url) to a reachable database: a SQLite path, or postgres://user@host:5432/db with the database created".into(),
        ),
        Err(_) => Check::Fail(
            format!("opening the database {url} did not finish within 10 s"),
            "check that the database host and port are right and reachable from here".into(),
        ),
    }
}

async fn check_redis(config: &ServerConfig) -> Check {
    let Some(url) = &config.redis_url else {
        return Check::Ok(
            "not configured: the in-memory channel layer serves one process (set REDIS_URL to run several nodes)".into(),
        );
    };
    let shown = chat_store::redact_url(url);
    let prefix = format!(
        "{}-doctor-{}",
        config.settings.redis_prefix,
        std::process::id()
    );
    let connect = || {
        RedisChannelLayer::connect(RedisLayerConfig {
            prefix: prefix.clone(),
            timeout: Duration::from_secs(2),
            ..RedisLayerConfig::new(url)
        })
    };
    let (a, b) = match (connect().await, connect().await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return Check::Fail(
                format!("Redis at {shown}: {e}"),
                "start Redis, or correct REDIS_URL (redis://[:password@]host:6379[/db]); unset it to run a single node without Redis".into(),
            );
        }
    };
    // A real Pub/Sub round trip between two "nodes".
    let round_trip = async {
        let group = GroupName::parse("doctor").map_err(|e| e.to_string())?;
        let ch = b.new_channel().await.map_err(|e| e.to_string())?;
        b.group_add(&group, &ch).await.map_err(|e| e.to_string())?;
        a.group_send(
            &group,
            LayerMessage::new("doctor.ping", serde_json::json!(1)),
        )
        .await
        .map_err(|e| e.to_string())?;
        b.receive(&ch).await.map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(Duration::from_secs(3), round_trip).await;
    let _ = a.close().await;
    let _ = b.close().await;
    match result {
        Ok(Ok(_)) => Check::Ok(format!("{shown} answers and a Pub/Sub round trip works")),
        Ok(Err(e)) => Check::Fail(
            format!("Redis at {shown} answers but Pub/Sub failed: {e}"),
            "make sure the Redis user may PUBLISH and SUBSCRIBE (ACL) and that no proxy in between drops Pub/Sub".into(),
        ),
        Err(_) => Check::Fail(
            format!("Redis at {shown} answers but a Pub/Sub message did not arrive within 3 s"),
            "check for a proxy or cluster setup that does not forward Pub/Sub".into(),
        ),
    }
}

fn check_secret(settings: &Settings) -> Check {
    match &settings.secret_key {
        Some(_) => Check::Ok("set by CHAT_SECRET_KEY / --secret-key".into()),
        None => Check::Warn(format!(
            "generated and kept in {}; every node of a cluster needs the same key: set CHAT_SECRET_KEY on all of them",
            settings.data_dir.join("secret_key").display()
        )),
    }
}

fn check_origins(settings: &Settings) -> Check {
    let origins = &settings.allowed_origins;
    if origins.is_empty() {
        return Check::Ok(
            "not set: browsers may open sockets only from the server's own host (behind a proxy with another public name, set CHAT_ALLOWED_ORIGINS=https://chat.example.com)".into(),
        );
    }
    for o in origins {
        if o == "*" {
            return Check::Warn(
                "'*' lets any web site open sockets with your users' cookies; list your sites instead".into(),
            );
        }
        let valid = match o.split_once("://") {
            Some((scheme, rest)) => {
                (scheme == "http" || scheme == "https")
                    && !rest.is_empty()
                    && !rest.trim_end_matches('/').contains(['/', '?', '#'])
            }
            None => false,
        };
        if !valid {
            return Check::Fail(
                format!("{o:?} is not an origin"),
                "write origins as scheme://host[:port], e.g. https://chat.example.com".into(),
            );
        }
    }
    Check::Ok(format!("{} allowed: {}", origins.len(), origins.join(", ")))
}

/// Runs every check, prints the report and returns whether all passed.
pub async fn run(settings: Settings) -> bool {
    let mut failed = false;
    let mut report = |name: &str, c: Check| {
        failed |= matches!(c, Check::Fail(..));
        print(name, &c);
    };
    report("secret key", check_secret(&settings));
    report("allowed origins", check_origins(&settings));
    let config = match ServerConfig::resolve(settings, time::UtcOffset::UTC) {
        Ok(c) => {
            report(
                "configuration",
                Check::Ok(format!("data directory {}", c.settings.data_dir.display())),
            );
            c
        }
        Err(e) => {
            report(
                "configuration",
                Check::Fail(e.to_string(), "fix the setting named above".into()),
            );
            return false;
        }
    };
    report("database", check_store(&config).await);
    report("redis", check_redis(&config).await);
    if failed {
        println!("\nSome checks failed; the server will not work until they are fixed.");
    } else {
        println!("\nAll checks passed.");
    }
    !failed
}
