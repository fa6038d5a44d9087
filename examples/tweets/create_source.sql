-- The tweets topic as a source: the full Twitter API v1.1 schema (74 fields) the
-- generator (`freshet-tweets`) produces. `make run` serves a Kafka-protocol broker on
-- 127.0.0.1:9092 with a `tweets` topic of 8 partitions; point bootstrap.server elsewhere
-- for a real cluster.
CREATE SOURCE tweets (
    created_at VARCHAR,
    id BIGINT,
    id_str VARCHAR,
    text VARCHAR,
    source VARCHAR,
    truncated BOOLEAN,
    in_reply_to_status_id BIGINT,
    in_reply_to_status_id_str VARCHAR,
    in_reply_to_user_id BIGINT,
    in_reply_to_user_id_str VARCHAR,
    in_reply_to_screen_name VARCHAR,
    "user" STRUCT<
        id BIGINT, id_str VARCHAR, name VARCHAR, screen_name VARCHAR, location VARCHAR,
        url VARCHAR, description VARCHAR, translator_type VARCHAR, protected BOOLEAN,
        verified BOOLEAN, followers_count BIGINT, friends_count BIGINT, listed_count BIGINT,
        favourites_count BIGINT, statuses_count BIGINT, created_at VARCHAR, utc_offset BIGINT,
        time_zone VARCHAR, geo_enabled BOOLEAN, lang VARCHAR, contributors_enabled BOOLEAN,
        is_translator BOOLEAN, profile_background_color VARCHAR,
        profile_background_image_url VARCHAR, profile_background_image_url_https VARCHAR,
        profile_background_tile BOOLEAN, profile_link_color VARCHAR,
        profile_sidebar_border_color VARCHAR, profile_sidebar_fill_color VARCHAR,
        profile_text_color VARCHAR, profile_use_background_image BOOLEAN,
        profile_image_url VARCHAR, profile_image_url_https VARCHAR, profile_banner_url VARCHAR,
        default_profile BOOLEAN, default_profile_image BOOLEAN, following BOOLEAN,
        follow_request_sent BOOLEAN>,
    coordinates STRUCT<type VARCHAR, coordinates DOUBLE[]>,
    place STRUCT<id VARCHAR, name VARCHAR, full_name VARCHAR, country_code VARCHAR, place_type VARCHAR>,
    contributors BIGINT[],
    is_quote_status BOOLEAN,
    quote_count BIGINT,
    reply_count BIGINT,
    retweet_count BIGINT,
    favorite_count BIGINT,
    entities STRUCT<
        hashtags STRUCT<text VARCHAR, indices BIGINT[]>[],
        urls STRUCT<url VARCHAR, expanded_url VARCHAR, display_url VARCHAR, indices BIGINT[]>[],
        user_mentions STRUCT<screen_name VARCHAR, name VARCHAR, id BIGINT, indices BIGINT[]>[]>,
    favorited BOOLEAN,
    retweeted BOOLEAN,
    filter_level VARCHAR,
    lang VARCHAR,
    timestamp_ms VARCHAR
)
INCLUDE partition AS kafka_partition, offset AS kafka_offset, timestamp AS kafka_ts
WITH (
    connector = 'kafka',
    topic = 'tweets',
    properties.bootstrap.server = '127.0.0.1:9092',
    scan.startup.mode = 'earliest'
) FORMAT PLAIN ENCODE JSON;
