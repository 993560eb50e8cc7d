// Validates custom resources against the schemas their projects publish, as packaged
// on npm by kubernetes-models (@kubernetes-models/istio, /envoy-gateway, /cert-manager,
// /prometheus-operator, /gateway-api, /flink): types, enums, patterns and required fields.
//
// Input (stdin): a JSON array of {"source": "...", "doc": {...}}. Every document must be
// of a kind these packages know; an unknown kind fails too. Prints one line per
// document; exits 1 when any is invalid.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// Where `make deploy-tools` installed the packages (deploy/tools/package.json).
const NODE_MODULES = process.env.KEYSYNC_NODE_MODULES;
if (!NODE_MODULES) {
  console.error("error: KEYSYNC_NODE_MODULES is not set");
  process.exit(2);
}

const PACKAGES = [
  [/\.istio\.io$/, "@kubernetes-models/istio"],
  [/^gateway\.envoyproxy\.io$/, "@kubernetes-models/envoy-gateway"],
  [/^cert-manager\.io$/, "@kubernetes-models/cert-manager"],
  [/^monitoring\.coreos\.com$/, "@kubernetes-models/prometheus-operator"],
  [/^gateway\.networking\.k8s\.io$/, "@kubernetes-models/gateway-api"],
  [/^flink\.apache\.org$/, "@kubernetes-models/flink"],
];

const input = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const { source, doc } of input) {
  const [group, version] = doc.apiVersion.split("/");
  const entry = PACKAGES.find(([pattern]) => pattern.test(group));
  const what = `${source}: ${doc.kind} ${doc.metadata?.name ?? "?"}`;
  if (!entry) {
    console.log(`FAIL ${what}: no published schema for ${doc.apiVersion}`);
    failed++;
    continue;
  }
  let model;
  try {
    const path = join(NODE_MODULES, entry[1], group, version, "index.js");
    model = (await import(pathToFileURL(path).href))[doc.kind];
  } catch (error) {
    model = undefined;
  }
  if (!model) {
    console.log(`FAIL ${what}: ${entry[1]} has no ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new model(doc).validate();
    console.log(`ok   ${what} (${entry[1]})`);
  } catch (error) {
    console.log(`FAIL ${what}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
