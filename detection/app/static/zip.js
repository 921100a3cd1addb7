// A zip without compression for "Download everything" (page.js); plain JavaScript, loaded before page.js.
"use strict";

// A zip without compression (the JPEG and WebM inside are compressed already): the format's local headers, central
// directory and CRC-32, written here because the page loads nothing from outside the service.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(data) {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function zipStored(files) {
  const parts = [];
  const directory = [];
  let offset = 0;
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  for (const [name, data] of files) {
    const encodedName = new TextEncoder().encode(name);
    const crc = crc32(data);
    const header = (signature, extra) => {
      const view = new DataView(new ArrayBuffer(extra ? 46 : 30));
      let at = 0;
      const u32 = (value) => { view.setUint32(at, value, true); at += 4; };
      const u16 = (value) => { view.setUint16(at, value, true); at += 2; };
      u32(signature);
      if (extra) u16(20);  // made by: version 2.0
      u16(20); u16(0x0800); u16(0); u16(time); u16(date);  // version needed, UTF-8 names, stored
      u32(crc); u32(data.length); u32(data.length); u16(encodedName.length); u16(0);
      if (extra) { u16(0); u16(0); u16(0); u32(0); u32(offset); }
      return new Uint8Array(view.buffer);
    };
    const local = header(0x04034b50, false);
    directory.push(header(0x02014b50, true), encodedName);
    parts.push(local, encodedName, data);
    offset += local.length + encodedName.length + data.length;
  }
  const directorySize = directory.reduce((sum, part) => sum + part.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, directorySize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...directory, new Uint8Array(end.buffer)], { type: "application/zip" });
}

