/** Deepest nesting of arrays and objects a pushed payload may have. */
export const MAX_DATA_DEPTH = 64;

/**
 * The nesting depth of `value` (0 for a scalar), or -1 once it passes `max`: an iterative walk
 * that stops there, so a payload nested a million deep costs `max` steps and never overflows the
 * stack the way an encoder would. Each object is visited once (shared parts and cycles too):
 * O(objects in the value).
 */
export function dataDepth(value: unknown, max: number = MAX_DATA_DEPTH): number {
  if (!isNested(value)) return 0;
  let deepest = 0;
  const seen = new Set<object>([value]);
  const stack: Array<[object, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [object, number];
    if (depth > max) return -1;
    if (depth > deepest) deepest = depth;
    const children: unknown[] = Array.isArray(v) ? v : Object.values(v);
    for (const c of children) {
      if (isNested(c) && !seen.has(c)) {
        seen.add(c);
        stack.push([c, depth + 1]);
      }
    }
  }
  return deepest;
}

function isNested(v: unknown): v is object {
  return typeof v === 'object' && v !== null && !ArrayBuffer.isView(v);
}
