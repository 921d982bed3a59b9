// Judges one conformance scenario run from the suite's saved results, check by check.
//
// usage: node evaluate.mjs <label> <results-dir> <suite-log> <suite-exit-code> \
//            [--cannot-pass id,id] [--forbidden id,id]
//
// The suite itself fails a scenario on any FAILURE or WARNING check. Some scenarios mix checks a
// client_credentials-only client can pass (discovery, token request, bearer use) with checks it
// never can (dynamic registration, the /authorize redirect). This script passes a scenario when:
//   - the suite saved a checks.json and neither the client nor the suite timed out;
//   - the client exited 0 (unless the scenario allows a client error: the suite then says nothing);
//   - every FAILURE or WARNING check is listed in --cannot-pass, and each listed check did fail
//     (one that now passes is a stale entry: take it off the list);
//   - no check listed in --forbidden was recorded at all;
//   - at least one check succeeded;
//   - unless some check is excused as one that cannot pass, the suite itself exited 0.
// It prints one line (PASS/FAIL, scenario, counts) and, on failure, why and the checks involved.

import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const [scenario, resultsDir, suiteLog, suiteExitRaw, ...rest] = process.argv.slice(2);
if (!scenario || !resultsDir || !suiteLog || suiteExitRaw === undefined) {
  console.error('usage: node evaluate.mjs <scenario> <results-dir> <suite-log> <suite-exit-code> [--cannot-pass ids] [--forbidden ids]');
  process.exit(2);
}
const suiteExit = Number.parseInt(suiteExitRaw, 10);

const listArg = (flag) => {
  const i = rest.indexOf(flag);
  if (i < 0 || i + 1 >= rest.length) return [];
  return rest[i + 1].split(/[,\s]+/).filter(Boolean);
};
const cannotPass = listArg('--cannot-pass');
const forbidden = listArg('--forbidden');

// The suite writes <results-dir>/<scenario>-<timestamp>/checks.json; the scenario name has a '/'.
const findFile = (dir, name) => {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return undefined;
  }
  for (const entry of entries) {
    const path = join(dir, entry);
    if (entry === name) return path;
    if (statSync(path).isDirectory()) {
      const found = findFile(path, name);
      if (found) return found;
    }
  }
  return undefined;
};

const readText = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

const problems = [];
const log = readText(suiteLog);

if (suiteExit === 124) problems.push('the suite did not finish within the scenario timeout');
if (log.includes('CLIENT TIMED OUT')) problems.push('the client timed out (suite --timeout)');
if (log.includes('CLIENT EXITED WITH ERROR')) problems.push('the client exited non-zero');

const checksPath = findFile(resultsDir, 'checks.json');
let checks = [];
if (!checksPath) {
  problems.push(`the suite saved no checks.json under ${resultsDir} (exit code ${suiteExit})`);
} else {
  try {
    checks = JSON.parse(readFileSync(checksPath, 'utf8'));
  } catch (e) {
    problems.push(`checks.json does not parse: ${e.message}`);
  }
}

// Request/response log entries are INFO; SKIPPED counts for nothing.
const scored = checks.filter((c) => ['SUCCESS', 'FAILURE', 'WARNING'].includes(c.status));
const succeeded = scored.filter((c) => c.status === 'SUCCESS');
const bad = scored.filter((c) => c.status !== 'SUCCESS');
const unexpected = bad.filter((c) => !cannotPass.includes(c.id));
const failedIds = new Set(bad.map((c) => c.id));
const stale = cannotPass.filter((id) => checksPath && !failedIds.has(id));
const forbiddenSeen = checks.filter((c) => forbidden.includes(c.id));

if (checksPath && succeeded.length === 0) problems.push('no check succeeded');
for (const c of unexpected) {
  problems.push(`check ${c.id} is ${c.status}: ${c.description}${c.errorMessage ? ` (${c.errorMessage})` : ''}`);
}
for (const id of stale) {
  problems.push(`check ${id} is listed as one that cannot pass, but it did not fail: remove it from the list in run.sh`);
}
for (const c of forbiddenSeen) {
  problems.push(`check ${c.id} must not happen in this scenario, but did: ${c.description}`);
}
// With no failing check excused, the suite's own verdict must agree.
if (cannotPass.length === 0 && suiteExit !== 0 && suiteExit !== 124) {
  problems.push(`the suite exited ${suiteExit}`);
}

const passedIds = [...new Set(succeeded.map((c) => c.id))];
const excused = cannotPass.filter((id) => failedIds.has(id));
const summary =
  `${succeeded.length} checks passed (${passedIds.join(', ') || 'none'})` +
  (excused.length ? `; cannot pass: ${excused.join(', ')}` : '');

if (problems.length === 0) {
  console.log(`PASS  ${scenario}  ${summary}`);
  process.exit(0);
}

console.log(`FAIL  ${scenario}  ${summary}`);
for (const p of problems) console.log(`      - ${p}`);
const shown = [...unexpected, ...forbiddenSeen];
if (shown.length) {
  console.log('      checks involved:');
  for (const c of shown) console.log(`      ${JSON.stringify(c)}`);
}
if (checksPath) {
  const dir = checksPath.slice(0, -'checks.json'.length);
  const stderr = readText(join(dir, 'stderr.txt')).trimEnd();
  // The suite's log already holds the client's stderr when the client exited non-zero.
  if (stderr && !log.includes('Client exited with code')) {
    const lines = stderr.split('\n');
    console.log(`      client stderr (last ${Math.min(lines.length, 60)} of ${lines.length} lines):`);
    for (const line of lines.slice(-60)) console.log(`        ${line}`);
  }
}
process.exit(1);
