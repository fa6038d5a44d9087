//! A generator of realistic Twitter API v1.1 tweets as JSON: all 74 fields of the tweets
//! schema (26 top-level fields, a 38-field `user`, `entities` with hashtags, urls and user
//! mentions), 2–4 KB each, deterministic for a seed. Used by `freshet-tweets` (the demo and
//! README walkthrough) and by the benchmark.

use serde_json::{json, Value};

/// `examples/tweets/create_source.sql`: the source over generated tweets, reading
/// [`DEMO_BOOTSTRAP`].
pub const CREATE_SOURCE_SQL: &str = include_str!("../../examples/tweets/create_source.sql");
/// The broker address the example statements name.
pub const DEMO_BOOTSTRAP: &str = "127.0.0.1:9092";

const LANGS: &[(&str, u32)] = &[
    ("en", 46),
    ("ja", 14),
    ("es", 10),
    ("pt", 7),
    ("ar", 5),
    ("und", 4),
    ("fr", 3),
    ("tr", 3),
    ("ko", 3),
    ("th", 2),
    ("in", 2),
    ("de", 1),
];
const WORDS: &[&str] = &[
    "the", "stream", "data", "is", "always", "fresh", "today", "we", "shipped", "a", "new",
    "release", "of", "our", "database", "and", "it", "just", "works", "with", "psql", "coffee",
    "morning", "kafka", "events", "never", "sleep", "great", "game", "tonight", "who", "else",
    "watching", "love", "this", "city", "weather", "rain", "again", "weekend", "plans", "music",
    "concert", "tickets", "sold", "out", "in", "minutes", "thanks", "everyone", "for", "support",
];
const HASHTAGS: &[&str] = &[
    "rust",
    "kafka",
    "streaming",
    "sql",
    "datascience",
    "music",
    "nowplaying",
    "football",
    "worldcup",
    "ai",
    "coffee",
    "travel",
    "photography",
    "gamedev",
    "opensource",
    "news",
    "breaking",
    "tbt",
    "love",
    "weekend",
];
const SOURCES: &[&str] = &[
    "<a href=\"http://twitter.com/download/iphone\" rel=\"nofollow\">Twitter for iPhone</a>",
    "<a href=\"http://twitter.com/download/android\" rel=\"nofollow\">Twitter for Android</a>",
    "<a href=\"https://mobile.twitter.com\" rel=\"nofollow\">Twitter Web App</a>",
    "<a href=\"https://about.twitter.com/products/tweetdeck\" rel=\"nofollow\">TweetDeck</a>",
];
const DAYS: &[&str] = &["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: &[&str] = &[
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const COLORS: &[&str] = &[
    "1DA1F2", "C0DEED", "000000", "FFFFFF", "F5F8FA", "333333", "E81C4F",
];
const PLACES: &[(&str, &str, &str)] = &[
    ("Lisbon", "Lisbon, Portugal", "PT"),
    ("Osaka", "Osaka-shi, Osaka", "JP"),
    ("Austin", "Austin, TX", "US"),
    ("Lagos", "Lagos, Nigeria", "NG"),
];

/// A small deterministic PRNG (splitmix64): no dependency, same tweets for the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Twitter's `created_at` format for `secs` since the epoch.
fn twitter_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} +0000 {}",
        DAYS[((days + 3).rem_euclid(7)) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        y
    )
}

/// (year, month, day) of a day number (days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn lang(rng: &mut Rng) -> &'static str {
    let total: u32 = LANGS.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(u64::from(total)) as u32;
    for (l, w) in LANGS {
        if x < *w {
            return l;
        }
        x -= w;
    }
    "en"
}

fn user(uid: u64) -> Value {
    // A user's profile is a function of its id, so a user looks the same in every tweet.
    let mut r = Rng::new(uid.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let screen = format!("{}_{}{}", r.pick(WORDS), r.pick(WORDS), uid % 10_000);
    let followers = r.below(5_000) * (1 + r.below(3) * r.below(400));
    let desc: Vec<&str> = (0..12 + r.below(14)).map(|_| *r.pick(WORDS)).collect();
    let img = format!(
        "http://pbs.twimg.com/profile_images/{}/{}_normal.jpg",
        uid * 7919,
        screen
    );
    let bg = format!(
        "http://abs.twimg.com/images/themes/theme{}/bg.png",
        1 + r.below(19)
    );
    json!({
        "id": uid,
        "id_str": uid.to_string(),
        "name": format!("{} {}", capitalize(*r.pick(WORDS)), capitalize(*r.pick(WORDS))),
        "screen_name": screen,
        "location": if r.chance(60) { Value::from(r.pick(PLACES).1) } else { Value::Null },
        "url": if r.chance(40) { Value::from(format!("https://t.co/{}", short(&mut r))) } else { Value::Null },
        "description": desc.join(" "),
        "translator_type": "none",
        "protected": false,
        "verified": r.chance(2),
        "followers_count": followers,
        "friends_count": r.below(3_000),
        "listed_count": r.below(200),
        "favourites_count": r.below(80_000),
        "statuses_count": 1 + r.below(120_000),
        "created_at": twitter_time(1_230_768_000 + (r.below(400_000_000) as i64)),
        "utc_offset": Value::Null,
        "time_zone": Value::Null,
        "geo_enabled": r.chance(30),
        "lang": Value::Null,
        "contributors_enabled": false,
        "is_translator": false,
        "profile_background_color": r.pick(COLORS),
        "profile_background_image_url": bg,
        "profile_background_image_url_https": bg.replace("http://", "https://"),
        "profile_background_tile": r.chance(10),
        "profile_link_color": r.pick(COLORS),
        "profile_sidebar_border_color": r.pick(COLORS),
        "profile_sidebar_fill_color": r.pick(COLORS),
        "profile_text_color": r.pick(COLORS),
        "profile_use_background_image": true,
        "profile_image_url": img,
        "profile_image_url_https": img.replace("http://", "https://"),
        "profile_banner_url": format!("https://pbs.twimg.com/profile_banners/{uid}/{}", 1_500_000_000 + r.below(90_000_000)),
        "default_profile": r.chance(40),
        "default_profile_image": r.chance(3),
        "following": Value::Null,
        "follow_request_sent": Value::Null,
    })
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn short(r: &mut Rng) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..10).map(|_| *r.pick(A) as char).collect()
}

/// Tweet number `n` of the stream seeded with `seed`, created at `epoch_ms`.
pub fn tweet(seed: u64, n: u64, epoch_ms: i64) -> Vec<u8> {
    let mut r = Rng::new(seed ^ n.wrapping_mul(0xA24B_AED4_963E_E407));
    let id = 1_050_000_000_000_000_000u64 + n * 4096 + r.below(4096);
    let uid = 1 + r.below(200_000);
    let lang = lang(&mut r);
    let mut text = String::new();
    let mut hashtags = Vec::new();
    let mut mentions = Vec::new();
    let mut urls = Vec::new();
    let words = 8 + r.below(20);
    for i in 0..words {
        if i > 0 {
            text.push(' ');
        }
        let start = text.chars().count();
        if r.chance(8) {
            let tag = *r.pick(HASHTAGS);
            text.push('#');
            text.push_str(tag);
            hashtags.push(json!({"text": tag, "indices": [start, start + 1 + tag.len()]}));
        } else if r.chance(4) {
            let m = 1 + r.below(200_000);
            let name = format!("{}_{}{}", r.pick(WORDS), r.pick(WORDS), m % 10_000);
            text.push('@');
            text.push_str(&name);
            mentions.push(json!({"screen_name": name, "name": capitalize(*r.pick(WORDS)), "id": m, "indices": [start, start + 1 + name.len()]}));
        } else {
            text.push_str(*r.pick(WORDS));
        }
    }
    if r.chance(30) {
        let u = format!("https://t.co/{}", short(&mut r));
        let start = text.chars().count() + 1;
        text.push(' ');
        text.push_str(&u);
        let end = start + u.len();
        urls.push(json!({
            "url": u,
            "expanded_url": format!("https://example.com/{}/{}", r.pick(WORDS), r.below(1_000_000)),
            "display_url": format!("example.com/{}…", r.pick(WORDS)),
            "indices": [start, end],
        }));
    }
    let reply = r.chance(15);
    let reply_to = 1 + r.below(200_000);
    let place = r.chance(3).then(|| {
        let (name, full, cc) = *r.pick(PLACES);
        json!({"id": format!("{:016x}", r.next_u64()), "name": name, "full_name": full,
               "country_code": cc, "place_type": "city"})
    });
    let secs = epoch_ms.div_euclid(1000);
    let v = json!({
        "created_at": twitter_time(secs),
        "id": id,
        "id_str": id.to_string(),
        "text": text,
        "source": r.pick(SOURCES),
        "truncated": false,
        "in_reply_to_status_id": if reply { Value::from(id - 1 - r.below(1 << 30)) } else { Value::Null },
        "in_reply_to_status_id_str": Value::Null,
        "in_reply_to_user_id": if reply { Value::from(reply_to) } else { Value::Null },
        "in_reply_to_user_id_str": if reply { Value::from(reply_to.to_string()) } else { Value::Null },
        "in_reply_to_screen_name": Value::Null,
        "user": user(uid),
        "coordinates": place.as_ref().map_or(Value::Null, |_| json!({"type": "Point", "coordinates": [-9.14 + r.below(100) as f64 / 1000.0, 38.72]})),
        "place": place.unwrap_or(Value::Null),
        "contributors": Value::Null,
        "is_quote_status": r.chance(5),
        "quote_count": r.below(20),
        "reply_count": r.below(50),
        "retweet_count": r.below(10) * r.below(10) * r.below(50),
        "favorite_count": r.below(10) * r.below(200),
        "entities": {"hashtags": hashtags, "urls": urls, "user_mentions": mentions},
        "favorited": false,
        "retweeted": false,
        "filter_level": "low",
        "lang": lang,
        "timestamp_ms": epoch_ms.to_string(),
    });
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tweets_are_realistic_json_of_2_to_4_kb() {
        let sizes: Vec<usize> = (0..200)
            .map(|n| tweet(1, n, 1_700_000_000_000).len())
            .collect();
        let avg = sizes.iter().sum::<usize>() / sizes.len();
        assert!((2000..=4096).contains(&avg), "average size {avg}");
        let t: Value = serde_json::from_slice(&tweet(1, 5, 1_700_000_000_000)).unwrap();
        assert_eq!(t.as_object().unwrap().len(), 26);
        assert_eq!(t["user"].as_object().unwrap().len(), 38);
        assert_eq!(tweet(1, 5, 0), tweet(1, 5, 0));
        assert_eq!(
            twitter_time(1_539_202_764),
            "Wed Oct 10 20:19:24 +0000 2018"
        );
    }
}
