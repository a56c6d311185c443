// COCO run-length masks ({size: [h, w], counts: "<compressed string>"}), as
// pycocotools writes them (rleFrString / rleDecode), decoded in the page.
"use strict";

// The compressed counts string -> run lengths (zeros first, alternating).
function rleCounts(s) {
  const counts = [];
  let p = 0;
  while (p < s.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = s.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);  // negative: sign-extend
    }
    if (counts.length > 2) x += counts[counts.length - 2];  // stored as a difference
    counts.push(x);
  }
  return counts;
}

// -> Uint8Array [h * w], row-major (runs go down the columns, Fortran order).
function rleDecode(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let index = 0, value = 0;
  for (const run of rleCounts(rle.counts)) {
    if (value) {
      for (let j = index; j < index + run; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    }
    index += run;
    value ^= 1;
  }
  return mask;
}
