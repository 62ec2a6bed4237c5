// node:test reporter that counts leaf tests and writes the totals as JSON to its destination.
import type { TestEvent } from "node:test/reporters";

export default async function* summary(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const failures: string[] = [];
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const data = event.data as { name: string; file?: string; skip?: unknown; todo?: unknown; details: { type?: string } };
    if (data.details.type === "suite") continue;
    if (data.skip || data.todo) skipped++;
    else if (event.type === "test:pass") passed++;
    else {
      failed++;
      failures.push(`${data.file ?? ""}: ${data.name}`);
    }
  }
  yield JSON.stringify({ passed, failed, skipped, failures }) + "\n";
}
