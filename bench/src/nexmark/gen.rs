//! The Nexmark event stream, following the Nexmark specification's generator: of every 50
//! events 1 is a person, 3 are auctions and 46 are bids; auctions are sold by recent people
//! (hot sellers among them), bids go mostly to hot auctions from hot bidders; event time moves
//! on by a fixed step per event. Event `n` depends only on `n` and the configuration, so the
//! same events go to Kafka and to PostgreSQL.

use std::fmt::Write as _;

const PERSON_PROPORTION: u64 = 1;
const AUCTION_PROPORTION: u64 = 3;
const TOTAL_PROPORTION: u64 = 50;
const FIRST_PERSON_ID: u64 = 1000;
const FIRST_AUCTION_ID: u64 = 1000;
const FIRST_CATEGORY_ID: u64 = 10;
const NUM_CATEGORIES: u64 = 5;
const HOT_SELLER_RATIO: u64 = 100;
const HOT_AUCTION_RATIO: u64 = 100;
const HOT_BIDDER_RATIO: u64 = 100;
const HOT_CHANNEL_RATIO: u64 = 100;
const ACTIVE_PEOPLE: u64 = 1000;
const PERSON_ID_LEAD: u64 = 10;
const IN_FLIGHT_AUCTIONS: u64 = 100;
const AUCTION_ID_LEAD: u64 = 10;
const CHANNELS: u64 = 10_000;

const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const US_STATES: [&str; 6] = ["az", "ca", "id", "or", "wa", "wy"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Which events to make.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Event time of event 0, microseconds since the Unix epoch.
    pub base_us: i64,
    /// Event time between consecutive events, microseconds.
    pub step_us: i64,
}

/// One event, rendered.
pub enum Event {
    Person(Person),
    Auction(Auction),
    Bid(Bid),
}

pub struct Person {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub credit_card: String,
    pub city: &'static str,
    pub state: &'static str,
    pub date_time: i64,
    pub extra: String,
}

pub struct Auction {
    pub id: u64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: u64,
    pub reserve: u64,
    pub date_time: i64,
    pub expires: i64,
    pub seller: u64,
    pub category: u64,
    pub extra: String,
}

pub struct Bid {
    pub auction: u64,
    pub bidder: u64,
    pub price: u64,
    pub channel: String,
    pub url: String,
    pub date_time: i64,
    pub extra: String,
}

/// A small deterministic generator (splitmix64), seeded per event.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn string(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from(b'a' + self.below(26) as u8))
            .collect()
    }

    /// Padding up to `avg` bytes on average, as the specification's `extra` fields.
    fn extra(&mut self, have: usize, avg: usize) -> String {
        let want = avg.saturating_sub(have);
        let len = (want as u64 / 2 + self.below(want as u64 + 1)) as usize;
        self.string(len)
    }

    /// A price in cents: log-uniform between 1 and a million dollars.
    fn price(&mut self) -> u64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as u64
    }
}

/// The last person created at or before event `n` (0-based).
fn last_person(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    let offset = (n % TOTAL_PROPORTION).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The last auction created at or before event `n` (0-based; 0 before the first).
fn last_auction(n: u64) -> u64 {
    let mut epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        if epoch == 0 {
            return 0;
        }
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// A recent person (or one about to be created).
fn next_person(n: u64, rng: &mut Rng) -> u64 {
    let people = last_person(n) + 1;
    let active = people.min(ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

/// An auction in flight (or one about to be created).
fn next_auction(n: u64, rng: &mut Rng) -> u64 {
    let last = last_auction(n);
    let min = last.saturating_sub(IN_FLIGHT_AUCTIONS);
    min + rng.below(last - min + 1 + AUCTION_ID_LEAD)
}

impl Config {
    pub fn time_of(&self, n: u64) -> i64 {
        self.base_us + self.step_us * n as i64
    }

    /// Event `n`.
    pub fn event(&self, n: u64) -> Event {
        let mut rng = Rng(n.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
        let at = self.time_of(n);
        let offset = n % TOTAL_PROPORTION;
        if offset < PERSON_PROPORTION {
            Event::Person(self.person(n, at, &mut rng))
        } else if offset < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(self.auction(n, at, &mut rng))
        } else {
            Event::Bid(self.bid(n, at, &mut rng))
        }
    }

    fn person(&self, n: u64, at: i64, rng: &mut Rng) -> Person {
        let name = format!(
            "{} {}",
            FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize]
        );
        let email = format!("{}@{}.com", rng.string(7), rng.string(5));
        let credit_card = (0..4)
            .map(|_| format!("{:04}", rng.below(10_000)))
            .collect::<Vec<_>>()
            .join(" ");
        let city = US_CITIES[rng.below(US_CITIES.len() as u64) as usize];
        let state = US_STATES[rng.below(US_STATES.len() as u64) as usize];
        let have = name.len() + email.len() + credit_card.len() + city.len() + state.len();
        Person {
            id: last_person(n) + FIRST_PERSON_ID,
            extra: rng.extra(have, 200),
            name,
            email,
            credit_card,
            city,
            state,
            date_time: at,
        }
    }

    fn auction(&self, n: u64, at: i64, rng: &mut Rng) -> Auction {
        let seller = if rng.below(HOT_SELLER_RATIO) > 0 {
            (last_person(n) / HOT_SELLER_RATIO) * HOT_SELLER_RATIO
        } else {
            next_person(n, rng)
        };
        let initial_bid = rng.price();
        let item_name = rng.string(20);
        let description = rng.string(100);
        // Open for up to twice the event time it takes to create the in-flight auctions.
        let horizon =
            self.step_us * (IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION) as i64;
        let length = 1 + rng.below((2 * horizon).max(1) as u64) as i64;
        let have = item_name.len() + description.len();
        Auction {
            id: last_auction(n) + FIRST_AUCTION_ID,
            reserve: initial_bid + rng.price(),
            initial_bid,
            category: FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES),
            seller: seller + FIRST_PERSON_ID,
            extra: rng.extra(have, 500),
            item_name,
            description,
            date_time: at,
            expires: at + length,
        }
    }

    fn bid(&self, n: u64, at: i64, rng: &mut Rng) -> Bid {
        let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
            (last_auction(n) / HOT_AUCTION_RATIO) * HOT_AUCTION_RATIO
        } else {
            next_auction(n, rng)
        };
        let bidder = if rng.below(HOT_BIDDER_RATIO) > 0 {
            (last_person(n) / HOT_BIDDER_RATIO) * HOT_BIDDER_RATIO + 1
        } else {
            next_person(n, rng)
        };
        let price = rng.price();
        let (channel, url) = if rng.below(HOT_CHANNEL_RATIO) > 0 {
            let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
            let c = HOT_CHANNELS[i];
            (
                c.to_string(),
                format!("https://www.nexmark.com/{c}/item.htm?query=1&channel_id={i}"),
            )
        } else {
            let c = rng.below(CHANNELS);
            let mut url = String::from("https://www.nexmark.com");
            for _ in 0..3 {
                let _ = write!(url, "/{}", rng.string(5));
            }
            let _ = write!(url, "/item.htm?query=1&channel_id={c}");
            (format!("channel-{c}"), url)
        };
        let have = channel.len() + url.len() + 24;
        Bid {
            auction: auction + FIRST_AUCTION_ID,
            bidder: bidder + FIRST_PERSON_ID,
            price,
            extra: rng.extra(have, 100),
            channel,
            url,
            date_time: at,
        }
    }
}

/// `2026-01-01 00:00:00.000123`: a TIMESTAMP as both freshet's JSON decoder and PostgreSQL's
/// COPY read it.
pub fn timestamp(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

impl Event {
    /// The topic it goes to and its JSON message.
    pub fn json(&self) -> (&'static str, String) {
        match self {
            Event::Person(p) => (
                "person",
                format!(
                    "{{\"id\":{},\"name\":{},\"email_address\":{},\"credit_card\":{},\"city\":{},\
                     \"state\":{},\"date_time\":\"{}\",\"extra\":{}}}",
                    p.id,
                    json_str(&p.name),
                    json_str(&p.email),
                    json_str(&p.credit_card),
                    json_str(p.city),
                    json_str(p.state),
                    timestamp(p.date_time),
                    json_str(&p.extra)
                ),
            ),
            Event::Auction(a) => (
                "auction",
                format!(
                    "{{\"id\":{},\"item_name\":{},\"description\":{},\"initial_bid\":{},\
                     \"reserve\":{},\"date_time\":\"{}\",\"expires\":\"{}\",\"seller\":{},\
                     \"category\":{},\"extra\":{}}}",
                    a.id,
                    json_str(&a.item_name),
                    json_str(&a.description),
                    a.initial_bid,
                    a.reserve,
                    timestamp(a.date_time),
                    timestamp(a.expires),
                    a.seller,
                    a.category,
                    json_str(&a.extra)
                ),
            ),
            Event::Bid(b) => (
                "bid",
                format!(
                    "{{\"auction\":{},\"bidder\":{},\"price\":{},\"channel\":{},\"url\":{},\
                     \"date_time\":\"{}\",\"extra\":{}}}",
                    b.auction,
                    b.bidder,
                    b.price,
                    json_str(&b.channel),
                    json_str(&b.url),
                    timestamp(b.date_time),
                    json_str(&b.extra)
                ),
            ),
        }
    }

    /// Its row in PostgreSQL's COPY text format (no field holds a tab, newline or backslash).
    pub fn copy_row(&self) -> (&'static str, String) {
        match self {
            Event::Person(p) => (
                "person",
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    p.id,
                    p.name,
                    p.email,
                    p.credit_card,
                    p.city,
                    p.state,
                    timestamp(p.date_time),
                    p.extra
                ),
            ),
            Event::Auction(a) => (
                "auction",
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    a.id,
                    a.item_name,
                    a.description,
                    a.initial_bid,
                    a.reserve,
                    timestamp(a.date_time),
                    timestamp(a.expires),
                    a.seller,
                    a.category,
                    a.extra
                ),
            ),
            Event::Bid(b) => (
                "bid",
                format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    b.auction,
                    b.bidder,
                    b.price,
                    b.channel,
                    b.url,
                    timestamp(b.date_time),
                    b.extra
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_ids_and_times_follow_the_specification() {
        let c = Config {
            base_us: 1_767_225_600_000_000,
            step_us: 100,
        };
        let (mut people, mut auctions, mut bids) = (0, 0, 0);
        for n in 0..5000 {
            match c.event(n) {
                Event::Person(p) => {
                    assert_eq!(p.id, FIRST_PERSON_ID + people);
                    people += 1;
                }
                Event::Auction(a) => {
                    assert_eq!(a.id, FIRST_AUCTION_ID + auctions);
                    assert!(a.expires > a.date_time);
                    auctions += 1;
                }
                Event::Bid(b) => {
                    assert!(b.auction < FIRST_AUCTION_ID + auctions + AUCTION_ID_LEAD);
                    bids += 1;
                }
            }
        }
        assert_eq!((people, auctions, bids), (100, 300, 4600));
        assert_eq!(
            timestamp(1_767_225_600_000_100),
            "2026-01-01 00:00:00.000100"
        );
        assert_eq!(c.event(7).json().1, c.event(7).json().1);
    }
}
