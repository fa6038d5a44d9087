//! The Nexmark queries RisingWave's suite defines (q0–q10, q14–q22; its q6 is the
//! "group top-1" form), written in freshet SQL over the `person`, `auction` and `bid` sources,
//! each next to the same query for PostgreSQL over tables of the same events: windows become
//! `date_bin` (and, for HOP, one row per covering window). Where the result would depend on
//! the order of ties, a tie-breaker on the event time makes it deterministic.

/// One query: its name, the view's SQL in freshet, the same from scratch in PostgreSQL.
pub struct Query {
    pub name: &'static str,
    pub freshet: &'static str,
    pub postgres: &'static str,
}

/// The sources, for freshet (`{bootstrap}`, `{prefix}` filled in); the same columns as tables
/// in PostgreSQL (`TABLES`).
pub const SOURCES: &str = "
CREATE SOURCE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR,
    city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
  WITH (connector = 'kafka', topic = '{prefix}person', properties.bootstrap.server = '{bootstrap}',
        scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON;
CREATE SOURCE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT,
    reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT,
    extra VARCHAR, WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
  WITH (connector = 'kafka', topic = '{prefix}auction', properties.bootstrap.server = '{bootstrap}',
        scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON;
CREATE SOURCE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP, extra VARCHAR,
    WATERMARK FOR date_time AS date_time - INTERVAL '4 seconds')
  WITH (connector = 'kafka', topic = '{prefix}bid', properties.bootstrap.server = '{bootstrap}',
        scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON;
";

pub const TABLES: &str = "
CREATE TABLE person (id BIGINT, name VARCHAR, email_address VARCHAR, credit_card VARCHAR,
    city VARCHAR, state VARCHAR, date_time TIMESTAMP, extra VARCHAR);
CREATE TABLE auction (id BIGINT, item_name VARCHAR, description VARCHAR, initial_bid BIGINT,
    reserve BIGINT, date_time TIMESTAMP, expires TIMESTAMP, seller BIGINT, category BIGINT,
    extra VARCHAR);
CREATE TABLE bid (auction BIGINT, bidder BIGINT, price BIGINT, channel VARCHAR, url VARCHAR,
    date_time TIMESTAMP, extra VARCHAR);
";

/// Tables built after loading, that the PostgreSQL forms of the windowed queries share.
pub const PG_WINDOWS: &str = "
CREATE TABLE bid_hop AS SELECT b.*, date_bin('2 seconds', date_time, '1970-01-01')
    - i * interval '2 seconds' AS window_start FROM bid b, generate_series(0, 4) AS i;
CREATE TABLE bid_tumble AS SELECT b.*, date_bin('10 seconds', date_time, '1970-01-01') AS window_start,
    date_bin('10 seconds', date_time, '1970-01-01') + interval '10 seconds' AS window_end FROM bid b;
CREATE TABLE person_tumble AS SELECT p.*, date_bin('10 seconds', date_time, '1970-01-01') AS window_start,
    date_bin('10 seconds', date_time, '1970-01-01') + interval '10 seconds' AS window_end FROM person p;
CREATE TABLE auction_tumble AS SELECT a.*, date_bin('10 seconds', date_time, '1970-01-01') AS window_start,
    date_bin('10 seconds', date_time, '1970-01-01') + interval '10 seconds' AS window_end FROM auction a;
ANALYZE;
";

const Q5: &str = "
SELECT AuctionBids.auction, AuctionBids.num
FROM (SELECT auction, count(*) AS num, window_start AS starttime
      FROM {hop} GROUP BY window_start, auction) AS AuctionBids
JOIN (SELECT max(CountBids.num) AS maxn, CountBids.starttime_c
      FROM (SELECT count(*) AS num, window_start AS starttime_c
            FROM {hop} GROUP BY auction, window_start) AS CountBids
      GROUP BY CountBids.starttime_c) AS MaxBids
ON AuctionBids.starttime = MaxBids.starttime_c AND AuctionBids.num >= MaxBids.maxn";

const Q7: &str = "
SELECT B.auction, B.price, B.bidder, B.date_time
FROM bid B
JOIN (SELECT max(price) AS maxprice, window_end AS date_time FROM {tumble} GROUP BY window_end) B1
  ON B.price = B1.maxprice
WHERE B.date_time BETWEEN B1.date_time - INTERVAL '10 seconds' AND B1.date_time";

const Q8: &str = "
SELECT P.id, P.name, P.starttime
FROM (SELECT id, name, window_start AS starttime, window_end AS endtime
      FROM {person_tumble} GROUP BY id, name, window_start, window_end) P
JOIN (SELECT seller, window_start AS starttime, window_end AS endtime
      FROM {auction_tumble} GROUP BY seller, window_start, window_end) A
  ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime";

macro_rules! same {
    ($name:literal, $sql:expr) => {
        Query {
            name: $name,
            freshet: $sql,
            postgres: $sql,
        }
    };
}

const Q15_16_COUNTS: &str = "
    count(*) AS total_bids,
    count(*) FILTER (WHERE price < 10000) AS rank1_bids,
    count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids,
    count(*) FILTER (WHERE price >= 1000000) AS rank3_bids,
    count(DISTINCT bidder) AS total_bidders,
    count(DISTINCT bidder) FILTER (WHERE price < 10000) AS rank1_bidders,
    count(DISTINCT bidder) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bidders,
    count(DISTINCT bidder) FILTER (WHERE price >= 1000000) AS rank3_bidders,
    count(DISTINCT auction) AS total_auctions,
    count(DISTINCT auction) FILTER (WHERE price < 10000) AS rank1_auctions,
    count(DISTINCT auction) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_auctions,
    count(DISTINCT auction) FILTER (WHERE price >= 1000000) AS rank3_auctions";

/// Every query, in order.
pub fn all() -> Vec<Query> {
    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }
    let hop = "HOP(bid, date_time, INTERVAL '2 seconds', INTERVAL '10 seconds')";
    let tumble = |rel: &str| format!("TUMBLE({rel}, date_time, INTERVAL '10 seconds')");
    let q5 = |h: &str| leak(Q5.replace("{hop}", h));
    let q7 = |t: &str| leak(Q7.replace("{tumble}", t));
    let q8 = |p: &str, a: &str| {
        leak(
            Q8.replace("{person_tumble}", p)
                .replace("{auction_tumble}", a),
        )
    };
    let q15 = leak(format!(
        "SELECT to_char(date_time, 'YYYY-MM-DD') AS day, {Q15_16_COUNTS}
         FROM bid GROUP BY to_char(date_time, 'YYYY-MM-DD')"
    ));
    let q16 = leak(format!(
        "SELECT channel, to_char(date_time, 'YYYY-MM-DD') AS day,
                max(to_char(date_time, 'HH24:MI')) AS minute, {Q15_16_COUNTS}
         FROM bid GROUP BY channel, to_char(date_time, 'YYYY-MM-DD')"
    ));
    vec![
        same!(
            "q0",
            "SELECT auction, bidder, price, date_time, extra FROM bid"
        ),
        same!(
            "q1",
            "SELECT auction, bidder, 0.908 * price AS price, date_time, extra FROM bid"
        ),
        same!(
            "q2",
            "SELECT auction, price FROM bid WHERE auction % 123 = 0"
        ),
        same!(
            "q3",
            "SELECT P.name, P.city, P.state, A.id FROM auction AS A JOIN person AS P \
             ON A.seller = P.id WHERE A.category = 10 \
             AND (P.state = 'or' OR P.state = 'id' OR P.state = 'ca')"
        ),
        same!(
            "q4",
            "SELECT Q.category, avg(Q.final) AS avg FROM (\
               SELECT max(B.price) AS final, A.category FROM auction A, bid B \
               WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires \
               GROUP BY A.id, A.category) Q \
             GROUP BY Q.category"
        ),
        Query {
            name: "q5",
            freshet: q5(hop),
            postgres: q5("bid_hop"),
        },
        same!(
            "q6",
            "SELECT Q.seller, avg(Q.final) OVER (PARTITION BY Q.seller ORDER BY Q.date_time \
                 ROWS BETWEEN 10 PRECEDING AND CURRENT ROW) AS avg \
             FROM (SELECT row_number() OVER (PARTITION BY A.id, A.seller \
                       ORDER BY B.price, B.date_time) AS rank, \
                     A.seller, B.price AS final, B.date_time \
                   FROM auction AS A, bid AS B \
                   WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) AS Q \
             WHERE Q.rank <= 1"
        ),
        Query {
            name: "q7",
            freshet: q7(&tumble("bid")),
            postgres: q7("bid_tumble"),
        },
        Query {
            name: "q8",
            freshet: q8(&tumble("person"), &tumble("auction")),
            postgres: q8("person_tumble", "auction_tumble"),
        },
        same!(
            "q9",
            "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller, \
                    category, extra, auction, bidder, price, bid_date_time, bid_extra \
             FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time, \
                          B.extra AS bid_extra, \
                          row_number() OVER (PARTITION BY A.id \
                              ORDER BY B.price DESC, B.date_time ASC) AS rownum \
                   FROM auction A, bid B \
                   WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires) t \
             WHERE rownum <= 1"
        ),
        same!(
            "q10",
            "SELECT auction, bidder, price, date_time, extra, \
                    to_char(date_time, 'YYYY-MM-DD') AS date, to_char(date_time, 'HH24:MI') AS time \
             FROM bid"
        ),
        same!(
            "q14",
            "SELECT auction, bidder, 0.908 * price AS price, \
                    CASE WHEN extract(hour FROM date_time) >= 8 \
                              AND extract(hour FROM date_time) <= 18 THEN 'dayTime' \
                         WHEN extract(hour FROM date_time) <= 6 \
                              OR extract(hour FROM date_time) >= 20 THEN 'nightTime' \
                         ELSE 'otherTime' END AS bid_time_type, \
                    date_time, \
                    length(extra) - length(replace(extra, 'c', '')) AS c_counts \
             FROM bid WHERE 0.908 * price > 1000000 AND 0.908 * price < 50000000"
        ),
        Query {
            name: "q15",
            freshet: q15,
            postgres: q15,
        },
        Query {
            name: "q16",
            freshet: q16,
            postgres: q16,
        },
        same!(
            "q17",
            "SELECT auction, to_char(date_time, 'YYYY-MM-DD') AS day, count(*) AS total_bids, \
                    count(*) FILTER (WHERE price < 10000) AS rank1_bids, \
                    count(*) FILTER (WHERE price >= 10000 AND price < 1000000) AS rank2_bids, \
                    count(*) FILTER (WHERE price >= 1000000) AS rank3_bids, \
                    min(price) AS min_price, max(price) AS max_price, avg(price) AS avg_price, \
                    sum(price) AS sum_price \
             FROM bid GROUP BY auction, to_char(date_time, 'YYYY-MM-DD')"
        ),
        same!(
            "q18",
            "SELECT auction, bidder, price, channel, url, date_time, extra \
             FROM (SELECT *, row_number() OVER (PARTITION BY bidder, auction \
                       ORDER BY date_time DESC) AS rank_number FROM bid) t \
             WHERE rank_number <= 1"
        ),
        same!(
            "q19",
            "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY auction \
                 ORDER BY price DESC, date_time) AS rank_number FROM bid) t \
             WHERE rank_number <= 10"
        ),
        same!(
            "q20",
            "SELECT auction, bidder, price, channel, url, B.date_time AS date_time_b, \
                    B.extra AS extra_b, item_name, description, initial_bid, reserve, \
                    A.date_time AS date_time_a, expires, seller, category, A.extra AS extra_a \
             FROM bid AS B JOIN auction AS A ON B.auction = A.id WHERE A.category = 10"
        ),
        same!(
            "q21",
            "SELECT auction, bidder, price, channel, \
                    CASE WHEN lower(channel) = 'apple' THEN '0' \
                         WHEN lower(channel) = 'google' THEN '1' \
                         WHEN lower(channel) = 'facebook' THEN '2' \
                         WHEN lower(channel) = 'baidu' THEN '3' \
                         ELSE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] END AS channel_id \
             FROM bid \
             WHERE (regexp_match(url, '(&|^)channel_id=([^&]*)'))[2] IS NOT NULL \
                OR lower(channel) IN ('apple', 'google', 'facebook', 'baidu')"
        ),
        same!(
            "q22",
            "SELECT auction, bidder, price, channel, split_part(url, '/', 4) AS dir1, \
                    split_part(url, '/', 5) AS dir2, split_part(url, '/', 6) AS dir3 FROM bid"
        ),
    ]
}
