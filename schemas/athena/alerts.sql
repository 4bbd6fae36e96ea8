-- Athena table over the alerts that s3-batch (and the Fluent Bit / Vector pipelines) write.
--
-- Layout (s3-batch's default --key-template, `{prefix}dt={date}/{t1}_{t2}_{t3}_{hash}{ext}`):
--   s3://BUCKET/harmony/alerts/dt=2026-11-25/1795572294010_1795575601000_1795575663123_945bd8f97a507277.ndjson.gz
-- Fluent Bit flow 1 (pipelines/fluent-bit/harmony-to-s3.*) and Vector flow 1 write under the same
-- dt=YYYY-MM-DD/ prefixes, so this one table reads all of them. `dt` is the UTC date of the
-- earliest alert in the object (s3-batch) or of the time the shipper read it (Fluent Bit, Vector).
--
-- Partition projection: no crawler, no MSCK REPAIR, no ALTER TABLE ADD PARTITION — Athena
-- computes the dt= prefixes from the query's WHERE clause. Always filter on dt:
--   SELECT severity_label, count(*) FROM harmony_alerts
--   WHERE dt BETWEEN '2026-11-01' AND '2026-11-30' GROUP BY 1;
--
-- Replace BUCKET (twice) and the prefix if you changed it. Objects are gzip NDJSON (`.ndjson.gz`);
-- Athena decompresses by the .gz extension. For --format json-array bodies use the Harness
-- preset's own table instead: this SerDe reads one JSON object per line.
--
-- Duplicates: harmony-alerts emits each tenant:eventId once per state dir. If several nodes
-- collect one tenant (docs/scaling.md), deduplicate at query time:
--   SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY dedupe_key ORDER BY "timestamp") AS n
--                  FROM harmony_alerts WHERE dt >= '2026-11-01') WHERE n = 1;

CREATE EXTERNAL TABLE IF NOT EXISTS harmony_alerts (
  `timestamp`        bigint        COMMENT 'eventCreated, epoch milliseconds UTC',
  msg_class          string        COMMENT 'checkpoint_harmony_security_event',
  msg_origin         struct<source:string, vendor:string, product:string>,
  tenantid           string        COMMENT '--tenant, else the event customerId',
  event_id           string,
  event_type         string        COMMENT 'phishing, malware, dlp, alert, ...',
  event_state        string,
  saas               string,
  confidence         string,
  description        string,
  sender             string,
  entity_id          string,
  entity_link        string,
  severity           int           COMMENT '1 (Very Low) .. 5 (Critical)',
  severity_label     string,
  alert_reasons      array<string> COMMENT 'why it was kept, e.g. type:phishing, severity>=4',
  dedupe_key         string        COMMENT '<tenantid>:<eventId>',
  -- The facts harmony-alerts parsed out of the event's `data` sentence (docs/harmony-alerts.md);
  -- NULL for events without #{...} placeholders and without an attachmentMd5.
  details            struct<shape:string, scan:struct<engine:string, verdict:string, id:string>, sender:string, subject:string, email_id:string, recipient:string, recipient_id:string, `user`:string, user_id:string, action:string, country:string, ip:string, logins:array<struct<action:string, country:string, ip:string, entity_id:string>>, app:string, leak:string, attachment_md5:string>,
  -- The original HEC event, untouched. Its shape varies by event type (data, additionalData,
  -- actions...), so it stays JSON text: json_extract_scalar(checkpoint_harmony, '$.entityId').
  checkpoint_harmony string
)
COMMENT 'Check Point Harmony Email & Collaboration alerts written by harmony-pipes'
PARTITIONED BY (dt string)
ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
WITH SERDEPROPERTIES (
  -- a malformed line (never written by s3-batch, but a hand-copied object may hold one) is
  -- returned as NULLs instead of failing the whole query
  'ignore.malformed.json' = 'true'
)
STORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'
OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'
LOCATION 's3://BUCKET/harmony/alerts/'
TBLPROPERTIES (
  'projection.enabled'          = 'true',
  'projection.dt.type'          = 'date',
  'projection.dt.format'        = 'yyyy-MM-dd',
  'projection.dt.range'         = '2024-01-01,NOW',
  'projection.dt.interval'      = '1',
  'projection.dt.interval.unit' = 'DAYS',
  'storage.location.template'   = 's3://BUCKET/harmony/alerts/dt=${dt}/',
  'has_encrypted_data'          = 'false'
);
