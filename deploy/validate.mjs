#!/usr/bin/env node
// Offline schema validation of Kubernetes manifests (no cluster needed).
//
//   node deploy/validate.mjs [--policy] [--quiet] PATH...   (PATH: file, directory or -)
//   node deploy/validate.mjs --print-config CONFIGMAP.yaml  (its data["tlsgate.yaml"])
//
// Each YAML document is turned into its model from the pinned npm packages
// kubernetes-models (core, apps, batch, ...) and @kubernetes-models/gateway-api
// and checked with the model's .validate() against the Kubernetes OpenAPI
// schema: types, enums, formats, required fields. The OpenAPI schema allows
// unknown fields (the API server drops them, or refuses them with
// --validate=strict), so this script also reports every field the schema
// does not know: it watches which fields the schema validator reads and
// flags any field it never looked at.
//
// --policy adds what tlsgate's own manifests promise: non-root, no privilege
// escalation, all capabilities dropped, read-only root filesystem, seccomp
// RuntimeDefault; for Deployments also the /ready readiness probe, a
// liveness probe, CPU limits and the Prometheus scrape annotations.
//
// Directories are searched recursively for *.yaml / *.yml, except
// kustomization.yaml and *.patch.yaml (render those with kubectl kustomize
// and pass the result on stdin). Kinds without a model in the packages
// (e.g. gateway.envoyproxy.io) get their metadata checked and a warning.
//
// Exit status: 0 every document valid, 1 some invalid, 2 usage or I/O error.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, basename } from "node:path";
import { parseAllDocuments } from "yaml";

// Groups whose kinds have no model in the pinned packages: checked loosely.
const FOREIGN_GROUPS = new Set(["gateway.envoyproxy.io"]);

function usage(msg) {
  if (msg) process.stderr.write(`validate: ${msg}\n`);
  process.stderr.write(
    "usage: validate.mjs [--policy] [--quiet] PATH...\n       validate.mjs --print-config CONFIGMAP.yaml\n",
  );
  process.exit(2);
}

function yamlFiles(path) {
  if (path === "-") return ["-"];
  const st = statSync(path);
  if (!st.isDirectory()) return [path];
  const out = [];
  for (const name of readdirSync(path).sort()) {
    const p = join(path, name);
    if (name === "node_modules") continue;
    if (statSync(p).isDirectory()) out.push(...yamlFiles(p));
    else if (/\.ya?ml$/.test(name) && name !== "kustomization.yaml" && !/\.patch\.ya?ml$/.test(name))
      out.push(p);
  }
  return out;
}

function readText(file) {
  return file === "-" ? readFileSync(0, "utf8") : readFileSync(file, "utf8");
}

// The module that holds the model of apiVersion/kind, or null.
function modelModule(apiVersion, kind) {
  if (!/^[A-Za-z0-9]+$/.test(kind)) return null;
  const slash = apiVersion.indexOf("/");
  if (slash < 0) return `kubernetes-models/${apiVersion}/${kind}`;
  const group = apiVersion.slice(0, slash);
  if (group.startsWith("gateway.networking."))
    return `@kubernetes-models/gateway-api/${apiVersion}/${kind}`;
  if (!group.includes(".") || group.endsWith(".k8s.io")) return `kubernetes-models/${apiVersion}/${kind}`;
  return null;
}

async function loadModel(apiVersion, kind) {
  const mod = modelModule(apiVersion, kind);
  if (mod === null) return null;
  try {
    const m = await import(mod);
    return m[kind] ?? null;
  } catch (e) {
    if (e.code === "ERR_MODULE_NOT_FOUND" || e.code === "ERR_PACKAGE_PATH_NOT_EXPORTED") return null;
    throw e;
  }
}

// Wrap value in proxies that record which fields of each object are read.
function tracker() {
  const entries = [];
  const proxies = new WeakMap();
  const wrap = (value, path) => {
    if (value === null || typeof value !== "object") return value;
    const known = proxies.get(value);
    if (known) return known;
    const read = new Set();
    const proxy = new Proxy(value, {
      get(t, k, r) {
        const v = Reflect.get(t, k, r);
        if (typeof k !== "string") return v;
        read.add(k);
        return Object.prototype.hasOwnProperty.call(t, k) ? wrap(v, `${path}.${k}`) : v;
      },
      has(t, k) {
        if (typeof k === "string") read.add(k);
        return Reflect.has(t, k);
      },
      // A validator that enumerates the keys (maps: labels, data, resources)
      // accepts any key.
      ownKeys(t) {
        for (const k of Reflect.ownKeys(t)) if (typeof k === "string") read.add(k);
        return Reflect.ownKeys(t);
      },
    });
    proxies.set(value, proxy);
    entries.push({ value, read, path });
    return proxy;
  };
  const unknown = () => {
    const out = [];
    for (const { value, read, path } of entries) {
      if (Array.isArray(value)) continue;
      for (const k of Object.keys(value)) if (!read.has(k)) out.push(`${path}.${k}`.replace(/^\./, ""));
    }
    return out;
  };
  return { wrap, unknown };
}

function validateWith(ModelClass, doc) {
  const errors = [];
  const model = new ModelClass(doc);
  const t = tracker();
  try {
    ModelClass.prototype.validate.call(t.wrap(model, ""));
  } catch (e) {
    errors.push(...String(e.message).split(", data").map((m, i) => (i ? "data" + m : m)));
  }
  for (const f of t.unknown()) errors.push(`${f}: unknown field (not in the ${doc.kind} schema)`);
  return [...new Set(errors)];
}

// ---- tlsgate's own promises (--policy) ----
function podSpecOf(doc) {
  if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(doc.kind))
    return doc.spec?.template?.spec;
  if (doc.kind === "Pod") return doc.spec;
  return undefined;
}

function policy(doc) {
  const errs = [];
  const spec = podSpecOf(doc);
  if (!spec) return errs;
  const podSc = spec.securityContext ?? {};
  if (podSc.seccompProfile?.type !== "RuntimeDefault")
    errs.push("policy: spec.template.spec.securityContext.seccompProfile.type must be RuntimeDefault");
  for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
    const sc = c.securityContext ?? {};
    const at = `container '${c.name}'`;
    if (!(sc.runAsNonRoot === true || (podSc.runAsNonRoot === true && sc.runAsNonRoot !== false)))
      errs.push(`policy: ${at}: runAsNonRoot must be true`);
    if (sc.allowPrivilegeEscalation !== false) errs.push(`policy: ${at}: allowPrivilegeEscalation must be false`);
    if (sc.readOnlyRootFilesystem !== true) errs.push(`policy: ${at}: readOnlyRootFilesystem must be true`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) errs.push(`policy: ${at}: capabilities.drop must include ALL`);
    if (sc.privileged === true) errs.push(`policy: ${at}: privileged must not be set`);
    if (doc.kind !== "Deployment") continue;
    if (c.readinessProbe?.httpGet?.path !== "/ready")
      errs.push(`policy: ${at}: readinessProbe must be httpGet /ready on the admin port`);
    if (!c.livenessProbe) errs.push(`policy: ${at}: livenessProbe missing`);
    if (!c.resources?.limits?.cpu || !c.resources?.limits?.memory)
      errs.push(`policy: ${at}: resources.limits.cpu and .memory must be set`);
  }
  // The pod is scraped on the gateway's admin port (the port named "admin";
  // a sidecar such as the key server has its own, under another name).
  if (doc.kind === "Deployment") {
    const admins = (spec.containers ?? []).flatMap((c) => (c.ports ?? []).filter((p) => p.name === "admin"));
    const ann = doc.spec?.template?.metadata?.annotations ?? {};
    if (ann["prometheus.io/scrape"] !== "true" || !admins.some((p) => ann["prometheus.io/port"] === String(p.containerPort)))
      errs.push(`policy: prometheus.io/scrape "true" and prometheus.io/port = the admin port required`);
    if (ann["prometheus.io/path"] !== "/stats") errs.push(`policy: prometheus.io/path must be /stats`);
  }
  return errs;
}

function configMapTlsgate(doc) {
  if (doc.kind !== "ConfigMap" || typeof doc.data?.["tlsgate.yaml"] !== "string") return [];
  const docs = parseAllDocuments(doc.data["tlsgate.yaml"]);
  const errs = [];
  if (docs.length !== 1) errs.push("data.tlsgate.yaml: expected one YAML document");
  for (const d of docs) for (const e of d.errors) errs.push(`data.tlsgate.yaml: ${e.message}`);
  if (!errs.length && !Array.isArray(docs[0].toJS()?.listeners))
    errs.push("data.tlsgate.yaml: no listeners");
  return errs;
}

// ---- main ----
const args = process.argv.slice(2);
let doPolicy = false;
let quiet = false;
let printConfig = null;
const paths = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--policy") doPolicy = true;
  else if (args[i] === "--quiet") quiet = true;
  else if (args[i] === "--print-config") printConfig = args[++i] ?? usage("--print-config needs a file");
  else if (args[i] === "-h" || args[i] === "--help") usage();
  else if (args[i].startsWith("--")) usage(`unknown option ${args[i]}`);
  else paths.push(args[i]);
}

if (printConfig !== null) {
  for (const d of parseAllDocuments(readText(printConfig))) {
    const o = d.toJS();
    if (o?.kind === "ConfigMap" && typeof o.data?.["tlsgate.yaml"] === "string") {
      process.stdout.write(o.data["tlsgate.yaml"]);
      process.exit(0);
    }
  }
  process.stderr.write(`validate: ${printConfig}: no ConfigMap with data["tlsgate.yaml"]\n`);
  process.exit(1);
}
if (!paths.length) usage("no files");

let files;
try {
  files = paths.flatMap(yamlFiles);
} catch (e) {
  process.stderr.write(`validate: ${e.message}\n`);
  process.exit(2);
}
let nDocs = 0;
let nBad = 0;
let nLoose = 0;
for (const file of files) {
  const name = file === "-" ? "<stdin>" : file;
  let docs;
  try {
    docs = parseAllDocuments(readText(file));
  } catch (e) {
    process.stderr.write(`validate: ${name}: ${e.message}\n`);
    process.exit(2);
  }
  let index = 0;
  for (const d of docs) {
    index++;
    const doc = d.toJS();
    if (doc === null && !d.errors.length) continue;
    nDocs++;
    let errors = d.errors.map((e) => `YAML: ${e.message}`);
    let loose = "";
    const what = `${doc?.kind ?? "?"} ${doc?.metadata?.namespace ? doc.metadata.namespace + "/" : ""}${doc?.metadata?.name ?? "?"}`;
    if (!errors.length) {
      if (typeof doc !== "object" || typeof doc.apiVersion !== "string" || typeof doc.kind !== "string") {
        errors.push("not a Kubernetes object (apiVersion and kind required)");
      } else {
        const Model = await loadModel(doc.apiVersion, doc.kind);
        const group = doc.apiVersion.includes("/") ? doc.apiVersion.split("/")[0] : "";
        if (Model) {
          errors.push(...validateWith(Model, doc));
        } else if (FOREIGN_GROUPS.has(group)) {
          const { ObjectMeta } = await import("@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta");
          if (typeof doc.metadata?.name !== "string") errors.push("metadata.name required");
          else errors.push(...validateWith(ObjectMeta, doc.metadata).map((e) => `metadata: ${e}`));
          loose = ` (metadata only: no schema for ${doc.apiVersion} ${doc.kind})`;
        } else {
          errors.push(`no schema for ${doc.apiVersion} ${doc.kind} (unknown kind or version)`);
        }
        errors.push(...configMapTlsgate(doc));
        if (doPolicy) errors.push(...policy(doc));
      }
    }
    if (errors.length) {
      nBad++;
      for (const e of errors) process.stdout.write(`${name}: document ${index} (${what}): ${e}\n`);
    } else {
      if (loose) nLoose++;
      if (!quiet || loose) process.stdout.write(`${name}: document ${index} (${what}): valid${loose}\n`);
    }
  }
}
process.stdout.write(
  `${nDocs - nBad} passed, ${nBad} failed` +
    ` (${nDocs} documents in ${files.length} file(s)${nLoose ? `, ${nLoose} without a schema` : ""})\n`,
);
process.exit(nBad ? 1 : 0);
