"""The live recognition policy of realtime sessions (nothing here knows about sockets): `turns` finds
where speech starts, pauses and stops on a stream; `streaming` decides when and what of the open turn to
decode again and which words two decodes agree on; `final` cleans each turn's final decode."""
