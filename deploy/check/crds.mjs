// Validates the prometheus-operator custom resources of deploy/k8s (written to OUT/crds.json by k8s.py) twice,
// with @kubernetes-models/prometheus-operator, which is generated from the operator's CRDs:
//   1. against the CRD's OpenAPI schema (types, required fields, patterns such as durations), the check the API
//      server makes on apply;
//   2. against its TypeScript types with tsc, whose excess-property check rejects an unknown field. The API server
//      would silently prune such a field (a misspelled `interval` would just not apply), so this catches what (1)
//      and the server let through.
// usage: node crds.mjs OUT   (run from a copy of this file in a directory whose node_modules has the package)
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const out = process.argv[2];
const crds = JSON.parse(readFileSync(join(out, "crds.json"), "utf8"));
const pkg = "@kubernetes-models/prometheus-operator";
let failed = 0;
const ts = [];

for (const [i, { source, object }] of crds.entries()) {
  const [group, version] = object.apiVersion.split("/");
  const modPath = `${pkg}/${group}/${version}/${object.kind}`;
  let mod;
  try {
    mod = await import(modPath);
  } catch (e) {
    console.error(`crds: ${source}: no model for ${object.apiVersion} ${object.kind}: ${e.message}`);
    failed++;
    continue;
  }
  try {
    new mod[object.kind](object).validate();
  } catch (e) {
    console.error(`crds: ${source}: ${e.message}`);
    failed++;
  }
  ts.push(`import type { I${object.kind} as T${i} } from "${modPath}";`);
  ts.push(`// ${source}\nexport const d${i}: T${i} = ${JSON.stringify(object, null, 1)};`);
}

// Type-check in the current directory, where module resolution finds node_modules.
writeFileSync("crds.ts", ts.join("\n") + "\n");
writeFileSync("tsconfig.json", JSON.stringify({
  compilerOptions: { strict: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext",
    target: "es2022", skipLibCheck: true },
  files: ["crds.ts"],
}));
try {
  execFileSync(join("node_modules", ".bin", "tsc"), ["-p", "."], { stdio: ["ignore", "pipe", "pipe"] });
} catch (e) {
  console.error("crds: unknown or mistyped fields (tsc over the operator's types):\n" + e.stdout + e.stderr);
  failed++;
}

if (failed > 0) process.exit(1);
console.log(`crds: ${crds.length} custom resources valid (CRD schema and strict types): ` +
  crds.map((c) => c.source).join(", "));
