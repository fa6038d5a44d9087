-- The Spark tutorial's projection, kept fresh: id, the author's name, the text.
CREATE MATERIALIZED VIEW tweet_texts AS
    SELECT id, ("user").name AS name, text FROM tweets;

-- Tweets per language.
CREATE MATERIALIZED VIEW tweets_per_lang AS
    SELECT lang, count(*) AS tweets FROM tweets GROUP BY lang;

-- Tweets per minute (by the tweet's own timestamp).
CREATE MATERIALIZED VIEW tweets_per_minute AS
    SELECT date_trunc('minute', to_timestamp_millis(CAST(timestamp_ms AS BIGINT))) AS minute,
           count(*) AS tweets
    FROM tweets GROUP BY 1;

-- The most-followed authors seen so far.
CREATE MATERIALIZED VIEW top_authors AS
    SELECT ("user").screen_name AS author, max(("user").followers_count) AS followers,
           count(*) AS tweets
    FROM tweets GROUP BY 1 ORDER BY followers DESC, author LIMIT 10;

-- Hashtag use: every hashtag of every tweet.
CREATE MATERIALIZED VIEW top_hashtags AS
    SELECT tag, count(*) AS uses
    FROM (SELECT unnest(("entities").hashtags)['text'] AS tag FROM tweets) AS t
    GROUP BY tag;
