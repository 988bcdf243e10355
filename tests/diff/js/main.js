'use strict';
// kafkajs 2.2.4 scenarios of the differential suite (tests/diff). Same transcript conventions as
// tests/diff/common.py. Usage: node main.js BOOTSTRAP OUTDIR SCENARIO...
// Prints "RESULT id status seconds" per scenario.
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs');

const TS0 = 1000000000000;
const SCENARIOS = {};
function scenario(name, fn) { SCENARIOS['js.' + name] = fn; }

class CheckFailed extends Error {}

class T {
  constructor(sid, file) { this.sid = sid; this.fd = fs.openSync(file, 'w'); }
  rec(kind, fields = {}) {
    const line = { kind, ...fields };
    fs.writeSync(this.fd, JSON.stringify(sortKeys(line)) + '\n');
  }
  check(cond, what) { if (!cond) { this.rec('check-failed', { what }); throw new CheckFailed(what); } }
  topic(suffix = '') {
    const base = this.sid.replace(/[._]/g, '-');
    return suffix ? `${base}-${suffix}` : base;
  }
  close() { fs.closeSync(this.fd); }
}

function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object' && !Buffer.isBuffer(v)) {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = sortKeys(v[k]);
    return o;
  }
  if (Buffer.isBuffer(v)) return v.toString();
  return v === undefined ? null : v;
}

// What a kafkajs user observes of an error: its class name, the protocol error type/code, and for
// aggregate errors the types of each inner error. (Message text is dropped by normalize.py.)
function err(e) {
  const o = { error: e.name || 'Error', msg: String(e.message || e) };
  if (e.type) o.type = e.type;
  if (e.code !== undefined) o.code = e.code;
  if (Array.isArray(e.errors)) o.errors = e.errors.map((x) => x.type || x.name);
  if (Array.isArray(e.partitions)) o.partitions = e.partitions.map((p) => [p.partition, p.error && (p.error.type || p.error.name)]);
  return o;
}

function client(bs) {
  return new Kafka({
    clientId: 'diff-js', brokers: bs.split(','), logLevel: logLevel.NOTHING,
    connectionTimeout: 10000, requestTimeout: 30000, retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
  });
}

async function withAdmin(bs, fn) {
  const admin = client(bs).admin();
  await admin.connect();
  try { return await fn(admin); } finally { await admin.disconnect(); }
}

async function create(admin, topic, n, configEntries = []) {
  // kafkajs's own waitForLeaders gives up after a few quick retries (seen under load): poll instead
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: n, replicationFactor: 1, configEntries }], waitForLeaders: false });
  await waitReady(admin, topic, n);
  return created;
}

async function waitReady(admin, topic, n) {
  const end = Date.now() + 20000;
  while (Date.now() < end) {
    try {
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      const ps = md.topics[0].partitions;
      if (ps.length === n && ps.every((p) => p.leader >= 0)) return;
    } catch (e) { /* not there yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`topic ${topic} not ready`);
}

async function offsets(t, admin, topic, label = 'offsets') {
  const r = await admin.fetchTopicOffsets(topic);
  r.sort((a, b) => a.partition - b.partition);
  for (const p of r) t.rec(label, { partition: p.partition, low: Number(p.low), high: Number(p.high), offset: Number(p.offset) });
}

async function produce(t, bs, topic, messages, opts = {}, sendOpts = {}) {
  const producer = client(bs).producer({ allowAutoTopicCreation: true, ...opts });
  await producer.connect();
  try {
    const md = await producer.send({ topic, messages, ...sendOpts });
    md.sort((a, b) => a.partition - b.partition);
    // log_append_time is not recorded: on a CreateTime topic Kafka answers -1, except when the
    // idempotent producer retried (seen once under load): then the batch's max timestamp (KAFKA-FACTS.md)
    for (const m of md) t.rec('send-result', { partition: m.partition, error_code: m.errorCode, base_offset: Number(m.baseOffset), log_start_offset: m.logStartOffset === undefined ? null : Number(m.logStartOffset) });
  } catch (e) {
    t.rec('send-error', err(e));
  } finally {
    await producer.disconnect();
  }
}

scenario('produce_keyed_offsets_by_time', async (t, bs) => {
  const topic = t.topic();
  await withAdmin(bs, async (admin) => {
    t.rec('created', { result: await create(admin, topic, 3) });
    const messages = [];
    for (let i = 0; i < 30; i++) {
      messages.push({ key: `key-${i % 7}`, value: `value-${i}`, timestamp: String(TS0 + i * 1000), headers: { 'h-index': String(i) } });
    }
    await produce(t, bs, topic, messages, { idempotent: true, maxInFlightRequests: 1 }, { acks: -1 });
    await offsets(t, admin, topic);
    for (const ts of [TS0, TS0 + 10500, TS0 + 29000, TS0 + 29001]) {
      const r = await admin.fetchTopicOffsetsByTimestamp(topic, ts);
      r.sort((a, b) => a.partition - b.partition);
      t.rec('offsets-by-timestamp', { ts, result: r.map((p) => [p.partition, Number(p.offset)]) });
    }
  });
});

scenario('acks_and_gzip', async (t, bs) => {
  const topic = t.topic();
  await withAdmin(bs, async (admin) => {
    await create(admin, topic, 1);
    const batch = (tag) => Array.from({ length: 20 }, (_, i) => ({ value: `${tag}-${i}`, timestamp: String(TS0 + i) }));
    await produce(t, bs, topic, batch('acks1'), {}, { acks: 1 });
    await produce(t, bs, topic, batch('acks-all-gzip'), { idempotent: true, maxInFlightRequests: 1 }, { acks: -1, compression: CompressionTypes.GZIP });
    await produce(t, bs, topic, batch('acks0'), {}, { acks: 0 });
    const end = Date.now() + 5000;
    let hi = 0;
    while (Date.now() < end && hi < 60) { hi = Number((await admin.fetchTopicOffsets(topic))[0].high); }
    await offsets(t, admin, topic);
  });
});

function configMap(res) {
  const m = {};
  for (const c of res.configEntries) m[c.configName] = { value: c.configValue, source: c.configSource, default: c.isDefault, read_only: c.readOnly, sensitive: c.isSensitive };
  return m;
}

async function describe(t, admin, topic, label, until) {
  const end = Date.now() + 10000;
  for (;;) {
    try {
      const r = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false });
      const res = r.resources[0];
      const configs = configMap(res);
      if (!until || until(configs) || Date.now() > end) { t.rec('describe-configs', { at: label, error_code: res.errorCode, configs }); return; }
    } catch (e) { t.rec('describe-configs', { at: label, ...err(e) }); return; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

// Metadata of `topic`; with `until`, asked again (every 100 ms, at most 10 s) until `until(topic)`
// holds: on a cluster a change is committed by the controller before every broker has it, so
// Kafka too can answer the old metadata right after CreatePartitions.
async function metadata(t, admin, topic, label, until) {
  const end = Date.now() + 10000;
  try {
    for (;;) {
      const md = await admin.fetchTopicMetadata({ topics: [topic] });
      if (until && !md.topics.every(until) && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      for (const x of md.topics) {
        t.rec('metadata', { at: label, name: x.name, partitions: x.partitions.sort((a, b) => a.partitionId - b.partitionId).map((p) => ({ id: p.partitionId, error_code: p.partitionErrorCode, leader: p.leader, replicas: p.replicas, isr: p.isr })) });
      }
      return;
    }
  } catch (e) { t.rec('metadata', { at: label, ...err(e) }); }
}

scenario('admin_topics_configs', async (t, bs) => {
  const topic = t.topic();
  await withAdmin(bs, async (admin) => {
    t.rec('create', { result: await create(admin, topic, 2, [{ name: 'retention.ms', value: '3600000' }]) });
    t.rec('create-again', { result: await create(admin, topic, 2) });   // kafkajs answers false, no error
    try {   // kafkajs then waits for the (not created) topic's metadata: UNKNOWN_TOPIC_OR_PARTITION
      t.rec('validate-only', { result: await admin.createTopics({ validateOnly: true, topics: [{ topic: t.topic('vo'), numPartitions: 3 }] }) });
    } catch (e) { t.rec('validate-only', err(e)); }
    t.rec('list', { mine: (await admin.listTopics()).filter((x) => x.startsWith(topic)).sort() });
    await metadata(t, admin, topic, 'created');
    await describe(t, admin, topic, 'created');
    await admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'segment.bytes', value: '1048576' }] }] });
    t.rec('altered', { how: 'AlterConfigs (full replace): segment.bytes only' });
    await describe(t, admin, topic, 'after alter', (c) => c['segment.bytes'] && c['segment.bytes'].value === '1048576');
    try {
      await admin.alterConfigs({ validateOnly: false, resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: 'abc' }] }] });
      t.rec('alter-invalid', { error: null });
    } catch (e) { t.rec('alter-invalid', err(e)); }
    for (const count of [4, 3]) {
      try {
        await admin.createPartitions({ topicPartitions: [{ topic, count }] });
        t.rec('create-partitions', { count, error: null });
      } catch (e) { t.rec('create-partitions', { count, ...err(e) }); }
    }
    await metadata(t, admin, topic, 'after create partitions', (x) => x.partitions.length === 4);
    await admin.deleteTopics({ topics: [topic] });
    t.rec('deleted');
    try {
      await admin.deleteTopics({ topics: [topic] });
      t.rec('delete-again', { error: null });
    } catch (e) { t.rec('delete-again', err(e)); }
  });
});

scenario('errors_create_topics', async (t, bs) => {
  await withAdmin(bs, async (admin) => {
    for (const [topic, numPartitions, replicationFactor] of [['bad name!', 1, 1], [t.topic('p0'), 0, 1], [t.topic('rf3'), 1, 3]]) {
      try {
        const r = await admin.createTopics({ topics: [{ topic, numPartitions, replicationFactor }] });
        t.rec('create', { topic, numPartitions, replicationFactor, result: r });
      } catch (e) { t.rec('create', { topic, numPartitions, replicationFactor, ...err(e) }); }
    }
    await metadata(t, admin, t.topic('never'), 'unknown topic');
  });
});

scenario('delete_records', async (t, bs) => {
  const topic = t.topic();
  await withAdmin(bs, async (admin) => {
    await create(admin, topic, 1);
    await produce(t, bs, topic, Array.from({ length: 10 }, (_, i) => ({ value: `r${i}`, timestamp: String(TS0 + i) })), { idempotent: true, maxInFlightRequests: 1 }, { acks: -1 });
    // kafkajs's admin needs the topic in its metadata cache first (else KafkaJSBrokerNotFound)
    await admin.fetchTopicMetadata({ topics: [topic] });
    for (const offset of ['4', '2', '10', '-1', '11']) {
      try {
        await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset }] });
        t.rec('delete-records', { offset, error: null });
      } catch (e) { t.rec('delete-records', { offset, ...err(e) }); }
      await offsets(t, admin, topic);
    }
  });
});

scenario('group_consume', async (t, bs) => {
  const topic = t.topic();
  await withAdmin(bs, async (admin) => {
    await create(admin, topic, 2);
    await produce(t, bs, topic, Array.from({ length: 10 }, (_, i) => ({ key: `k${i}`, value: `g${i}`, timestamp: String(TS0 + i), headers: { h: `v${i}` } })), { idempotent: true, maxInFlightRequests: 1 }, { acks: -1 });
    const consumer = client(bs).consumer({ groupId: t.topic('group'), sessionTimeout: 10000, heartbeatInterval: 1000 });
    const got = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({ eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), key: String(message.key), value: String(message.value), timestamp: Number(message.timestamp), headers: Object.fromEntries(Object.entries(message.headers || {}).map(([k, v]) => [k, String(v)])) });
      } });
      const end = Date.now() + 25000;
      while (got.length < 10 && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    } finally {
      await consumer.disconnect();
    }
    got.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
    for (const r of got) t.rec('record', r);
    t.check(got.length === 10, 'all 10 consumed');
    const go = await admin.fetchOffsets({ groupId: t.topic('group'), topics: [topic] });
    t.rec('group-offsets', { offsets: go[0].partitions.sort((a, b) => a.partition - b.partition).map((p) => [p.partition, Number(p.offset)]) });
  });
});

async function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--list') { for (const s of Object.keys(SCENARIOS)) console.log(s); return; }
  const [bs, outdir, ...ids] = args;
  for (const sid of ids) {
    const t0 = Date.now();
    let status;
    const fn = SCENARIOS[sid];
    if (!fn) status = 'unknown';
    else {
      const t = new T(sid, path.join(outdir, sid + '.jsonl'));
      try { await fn(t, bs); t.rec('end'); status = 'ok'; }
      catch (e) {
        if (!(e instanceof CheckFailed)) { t.rec('exception', err(e)); console.error(e); }
        status = 'failed';
      } finally { t.close(); }
    }
    console.log(`RESULT ${sid} ${status} ${((Date.now() - t0) / 1000).toFixed(1)}`);
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
