-- Wireshark/tshark postdissector for the multipath overlay's Geneve option (class 0xFFF0, type 0x81,
-- 24 bytes of data; layout in ARCHITECTURE.md "Decisions" and pipelines/src/wire/geneve.rs).
-- Wireshark's Geneve dissector has no table for option classes, so this runs after it and decodes the
-- option data found behind each matching option header.
--
--   tshark -X lua_script:wireshark/overlay.lua -r capture.pcap -O mpoverlay
--   tshark -X lua_script:wireshark/overlay.lua -r capture.pcap -T fields -e mpoverlay.seq -e mpoverlay.path

local p = Proto("mpoverlay", "Multipath overlay option")
local f = p.fields
f.version = ProtoField.uint8("mpoverlay.version", "Version", base.DEC, nil, 0xF0)
f.flags = ProtoField.uint8("mpoverlay.flags", "Flags", base.HEX, nil, 0x0F)
f.probe = ProtoField.bool("mpoverlay.flags.probe", "Probe", 8, nil, 0x01)
f.probe_reply = ProtoField.bool("mpoverlay.flags.probe_reply", "Probe reply", 8, nil, 0x02)
f.hops = ProtoField.uint8("mpoverlay.hops", "Hop count", base.DEC)
f.path = ProtoField.uint8("mpoverlay.path", "Path id", base.DEC)
f.reserved = ProtoField.uint8("mpoverlay.reserved", "Reserved", base.HEX)
f.sender = ProtoField.uint16("mpoverlay.sender", "Sender node", base.DEC)
f.dest = ProtoField.uint16("mpoverlay.dest", "Destination node", base.DEC)
f.stream = ProtoField.uint16("mpoverlay.stream", "Stream", base.HEX)
f.key = ProtoField.uint16("mpoverlay.key", "Key id", base.DEC)
f.seq = ProtoField.uint32("mpoverlay.seq", "Sequence number", base.DEC)
f.tstamp = ProtoField.uint64("mpoverlay.tstamp", "Transmit timestamp (ns)", base.DEC)

local opt_class = Field.new("geneve.option.class")
local opt_type = Field.new("geneve.option.type")
local opt_len = Field.new("geneve.option.length")

local OPT_CLASS = 0xFFF0
local OPT_TYPE = 0x81
local DATA_LEN = 24

function p.dissector(tvb, pinfo, tree)
  local classes = { opt_class() }
  local types = { opt_type() }
  local lens = { opt_len() }
  for i, c in ipairs(classes) do
    local t = types[i]
    if c.value == OPT_CLASS and t ~= nil and t.value == OPT_TYPE then
      -- The class field's offset is relative to the frame, which is this postdissector's tvb.
      local off = c.offset + 4
      if off + DATA_LEN <= tvb:len() then
        local d = tvb(off, DATA_LEN)
        local st = tree:add(p, d)
        st:add(f.version, d(0, 1))
        local fl = st:add(f.flags, d(0, 1))
        fl:add(f.probe, d(0, 1))
        fl:add(f.probe_reply, d(0, 1))
        st:add(f.hops, d(1, 1))
        st:add(f.path, d(2, 1))
        st:add(f.reserved, d(3, 1))
        st:add(f.sender, d(4, 2))
        st:add(f.dest, d(6, 2))
        st:add(f.stream, d(8, 2))
        st:add(f.key, d(10, 2))
        st:add(f.seq, d(12, 4))
        st:add(f.tstamp, d(16, 8))
        pinfo.cols.info:append(string.format(" [overlay path %d seq %d stream 0x%04x]",
          d(2, 1):uint(), d(12, 4):uint(), d(8, 2):uint()))
      end
    end
  end
end

-- allfields = true: the Geneve option fields must be filled in for this postdissector to read them.
register_postdissector(p, true)
