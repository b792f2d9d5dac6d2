// The build step: relay serves this package's client to its demo page from package data,
// so relay-client.js is copied (not symlinked) into relay/demo/static/ and both are
// committed. `--check` fails if the copy is stale (a Python test checks the same).
import { copyFileSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const source = fileURLToPath(new URL("../relay-client.js", import.meta.url));
const target = fileURLToPath(new URL("../../../relay/demo/static/relay-client.js", import.meta.url));

if (process.argv.includes("--check")) {
  if (!readFileSync(source).equals(readFileSync(target))) {
    console.error(`${target} differs from ${source}: run npm run build in clients/js`);
    process.exit(1);
  }
  console.log("relay/demo/static/relay-client.js is up to date");
} else {
  copyFileSync(source, target);
  console.log(`copied relay-client.js to ${target}`);
}
